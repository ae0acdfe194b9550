"""AsyncAPI 3 documents of both services, generated from their FastStream apps.

FastStream documents the subscribers (their names and docstrings are part of
the contract); the payload schemas and the streams each service writes with
its atomic Lua steps are added here from the same pydantic models as the JSON
Schema files, so one model is the source of every published contract.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import structlog
from faststream.specification import AsyncAPI
from pydantic import BaseModel, TypeAdapter

from rehabgate.schemas.inbound import INBOUND_ADAPTER
from rehabgate.schemas.outbound import (
    ClientMessage,
    DeliveryReceipt,
    PhysioAlert,
    ProgressionEvaluated,
)
from rehabgate.schemas.streams import (
    INBOUND_DEAD_LETTER,
    client_messages_stream,
    evaluated_stream,
    physio_alerts_stream,
    receipts_stream,
)
from rehabgate.services.common.settings import Settings

REF = "#/components/schemas/{model}"
DOC_SETTINGS = {"redis_url": "redis://redis:6379/0", "consumer": "CONSUMER", "log_level": "ERROR"}


def _schema(adapter: TypeAdapter[Any], components: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _asyncapi_dialect(adapter.json_schema(ref_template=REF))
    components.update(schema.pop("$defs", {}))
    return schema


def _asyncapi_dialect(node: Any) -> Any:
    """AsyncAPI's schema object takes `discriminator` as the property name (a string),
    where pydantic writes the OpenAPI object {propertyName, mapping}."""
    if isinstance(node, dict):
        found = node.get("discriminator")
        converted = {k: _asyncapi_dialect(v) for k, v in node.items()}
        if isinstance(found, dict):
            converted["discriminator"] = found["propertyName"]
        return converted
    if isinstance(node, list):
        return [_asyncapi_dialect(item) for item in node]
    return node


def _model(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(model)


def render(service: str) -> str:
    previous = structlog.get_config()
    try:
        settings = Settings(**DOC_SETTINGS)  # type: ignore[arg-type]
        if service == "gatekeeper":
            from rehabgate.services.gatekeeper.app import create_app as gatekeeper

            app = gatekeeper(settings)
        else:
            from rehabgate.services.notifier.app import create_app as notifier

            app = notifier(settings)
    finally:
        structlog.configure(**previous)
    doc: dict[str, Any] = (
        AsyncAPI(app.broker, title=f"rehabgate {service}", version="1")  # type: ignore[arg-type]
        .to_specification()
        .to_jsonable()
    )
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    consumed = _schema(INBOUND_ADAPTER if service == "gatekeeper" else _model(ProgressionEvaluated),
                       schemas)  # fmt: skip
    for channel in doc["channels"].values():
        channel["description"] = inspect.cleandoc(channel.get("description", ""))
    for message in doc["components"]["messages"].values():
        message["payload"] = {
            "description": "JSON in the stream entry field `event`.",
            **consumed,
        }
    schemas.pop("EmptyPayload", None)
    written: dict[str, type[BaseModel] | None] = (
        {evaluated_stream(0): ProgressionEvaluated, INBOUND_DEAD_LETTER: None}
        if service == "gatekeeper"
        else {client_messages_stream(0): ClientMessage, receipts_stream(0): DeliveryReceipt,
              physio_alerts_stream(0): PhysioAlert}
    )  # fmt: skip
    for address, model in written.items():
        key = f"{address}:Written"
        payload = (
            _schema(_model(model), schemas)
            if model
            else {"type": "object", "description": "Fields reason, raw, source_stream, source_id, dead_lettered_at."}
        )  # fmt: skip
        doc["channels"][key] = {
            "address": address,
            "description": f"Written by the {service} in its atomic step (partition 0 shown; "
            "with N partitions the hash tag is {p0}..{pN-1}).",
            "messages": {"Written": {"$ref": f"#/components/messages/{key}"}},
        }
        doc["components"]["messages"][key] = {"title": key, "payload": payload}
        doc["operations"][f"{key}Send"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/Written"}],
        }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
