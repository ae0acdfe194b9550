"""Issue 17: a physio's approval reads "approved" wherever people read decisions
(the page, `rehabgate history`, CSV, the FHIR export's label, the demo's table),
even when other exit criteria still hold the stage; a hold stays "held"."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.services.gatekeeper.audit.history import decision_label, outcome_label


def decision(**changes: Any) -> ProgressionEvaluated:
    base: dict[str, Any] = {
        "event_id": uuid.uuid4(), "occurred_at": datetime(2026, 6, 8, tzinfo=UTC),
        "clinic_id": "clinic-k", "client_id": "c-1", "decision_id": uuid.uuid4(), "outcome": "held",
        "protocol": "achilles-tendinopathy@1", "from_stage": "start-loading",
        "to_stage": "start-loading", "stage_count": 4, "summary": "still needed: at least 14 days at this stage",
        "criteria": (), "cause_event_id": uuid.uuid4(), "cause_event_type": "clinician.action",
        "decided_by": "clinician", "clinician_id": "physio-7",
    }  # fmt: skip
    return ProgressionEvaluated(**{**base, **changes})


@pytest.mark.parametrize(
    ("outcome", "action", "label"),
    [
        ("held", "approve", "approved"),
        ("flagged", "approve", "approved"),
        ("unlocked", "approve", "unlocked"),
        ("held", "hold", "held"),
        ("regressed", "regress", "regressed"),
        ("held", None, "held"),
        (None, None, None),
    ],
)
def test_outcome_label(outcome: str | None, action: str | None, label: str | None) -> None:
    assert outcome_label(outcome, action) == label


def test_decision_label_tells_an_approval_from_a_hold() -> None:
    assert decision_label(decision()) == "approved"
    assert decision_label(decision(summary="held by clinician")) == "held"
    assert decision_label(decision(outcome="unlocked")) == "unlocked"
    rules = decision(decided_by="rules", clinician_id=None, cause_event_type="session.logged")
    assert decision_label(rules) == "held"
