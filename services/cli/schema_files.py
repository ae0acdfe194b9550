"""JSON Schema files of the wire contract and the protocol format, kept in the repo.

`rehabgate schemas export` rewrites them; a test fails when they are stale, so
the files an integrator reads always match the code.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from rehabgate.schemas.inbound import (
    INBOUND_ADAPTER,
    CheckinLogged,
    ClientContactUpdated,
    ClientDischarged,
    ClientEnrolled,
    ClinicianAction,
    SessionLogged,
)
from rehabgate.schemas.outbound import (
    ClientMessage,
    DeliveryReceipt,
    PhysioAlert,
    ProgressionEvaluated,
)
from rehabgate.services.gatekeeper.domain.protocol import Protocol

from . import asyncapi_docs

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"

MODELS: dict[str, type[BaseModel]] = {
    "client.enrolled": ClientEnrolled,
    "session.logged": SessionLogged,
    "checkin.logged": CheckinLogged,
    "clinician.action": ClinicianAction,
    "client.contact.updated": ClientContactUpdated,
    "client.discharged": ClientDischarged,
    "progression.evaluated": ProgressionEvaluated,
    "client.message": ClientMessage,
    "message.receipt": DeliveryReceipt,
    "physio.alert": PhysioAlert,
    "protocol": Protocol,
}


def render() -> dict[str, str]:
    """File name -> JSON text for every schema."""
    files = {
        f"{name}.v1.schema.json": _dump(model.model_json_schema(), name)
        for name, model in MODELS.items()
    }
    files["inbound-event.v1.schema.json"] = _dump(INBOUND_ADAPTER.json_schema(), "inbound-event")
    for service in ("gatekeeper", "notifier"):
        files[f"asyncapi-{service}.json"] = asyncapi_docs.render(service)
    return files


def _dump(schema: dict[str, object], name: str) -> str:
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://rehabgate.invalid/schemas/{name}.v1.schema.json",
        **schema,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Schema files that are missing or differ from what the code would write."""
    return [
        name
        for name, text in render().items()
        if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
    ]
