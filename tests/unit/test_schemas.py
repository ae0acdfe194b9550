"""The wire contract: strict models, and JSON Schema files that match the code."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from rehabgate.schemas import ProgressionEvaluated, SessionLogged, parse_inbound
from rehabgate.services.cli.schema_files import SCHEMA_DIR, render, stale


def a_session(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "session.logged",
        "occurred_at": "2026-11-02T18:30:00+01:00",
        "clinic_id": "clinic-a",
        "client_id": "c-7f3a9",
        "session_id": "s-1",
        "pain_during": 3,
        "completed": True,
        **overrides,
    }


def test_valid_session_parses_to_its_type() -> None:
    event = parse_inbound(json.dumps(a_session()))
    assert isinstance(event, SessionLogged)
    assert event.pain_during == 3


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"pain_during": 11}, "pain_during"),
        ({"pain_during": -1}, "pain_during"),
        ({"occurred_at": "2026-11-02T18:30:00"}, "occurred_at"),
        ({"client_id": "jane.doe@example.org"}, "client_id"),
        ({"client_id": "Jane Doe"}, "client_id"),
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"favourite_colour": "blue"}, "favourite_colour"),
        ({"event_type": "session.deleted"}, "event_type"),
        ({"schema_version": 2}, "schema_version"),
    ],
)
def test_invalid_events_are_refused_naming_the_field(
    overrides: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_inbound(json.dumps(a_session(**overrides)))
    assert where in str(caught.value)


def test_models_are_frozen() -> None:
    event = parse_inbound(json.dumps(a_session()))
    with pytest.raises(ValidationError):
        event.pain_during = 9  # type: ignore[misc]


def test_schema_files_are_up_to_date() -> None:
    assert stale() == [], "run `rehabgate schemas export` and commit schemas/json/"


def test_schema_files_cover_every_event_and_the_protocol() -> None:
    names = set(render())
    for event_type in ("client.enrolled", "session.logged", "checkin.logged",
                       "clinician.action", "client.contact.updated", "client.discharged",
                       "progression.evaluated", "protocol"):  # fmt: skip
        assert f"{event_type}.v1.schema.json" in names
    decision = json.loads((SCHEMA_DIR / "progression.evaluated.v1.schema.json").read_text())
    assert set(ProgressionEvaluated.model_fields) <= set(decision["properties"])
