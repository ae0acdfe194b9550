"""Client messages: what each outcome says, in plain words."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rehabgate.schemas.inbound import ClientEnrolled
from rehabgate.schemas.outbound import CriterionResult, ProgressionEvaluated
from rehabgate.services.gatekeeper.domain import enroll
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.notifier.messages import compose
from tests.events import enrolment

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
PROTOCOL = load_protocols()["achilles-tendinopathy@1"]


def a_result(role: str, status: str, client_text: str) -> CriterionResult:
    return CriterionResult(
        id="r", kind="pain_during_above", role=role, status=status, observed=6,  # type: ignore[arg-type]
        threshold=5, explanation="x", client_text=client_text, source="clinic default",
    )  # fmt: skip


def a_decision(**changes: Any) -> ProgressionEvaluated:
    decision = enroll(PROTOCOL, None, ClientEnrolled.model_validate(enrolment("c-1")))
    assert decision.evaluation is not None
    return decision.evaluation.model_copy(update=changes)


def test_enrolment_welcomes_and_gives_the_first_prescription() -> None:
    message = compose(a_decision(), NOW)
    assert message is not None
    assert message.title == "Welcome to your rehab programme"
    assert "Stage 1: start loading (1 of 4)" in message.body
    assert "One-leg heel raises on the floor: 3 x 10, body weight, daily" in message.body


def test_unlock_says_why_and_what_changes() -> None:
    stage2 = PROTOCOL.stages[1]
    message = compose(
        a_decision(from_stage="start-loading", to_stage=stage2.id, to_stage_name=stage2.name,
                   to_stage_number=2, prescription=stage2.prescription,
                   criteria=(a_result("exit", "passed", "3 sessions with pain at 3/10 or less"),)),
        NOW,
    )  # fmt: skip
    assert message is not None
    assert message.title == "You've unlocked Stage 2: start strengthening"
    assert "3 sessions with pain at 3/10 or less" in message.body
    assert "Quick-rebounding heel raises: 3 x 20" in message.body


def test_step_back_is_calm_and_names_the_first_triggered_rule() -> None:
    message = compose(
        a_decision(outcome="regressed", from_stage="start-strengthening",
                   criteria=(a_result("step_back", "failed", "pain above 5/10 twice"),
                             a_result("step_back", "failed", "pain above 5/10 once"))),
        NOW,
    )  # fmt: skip
    assert message is not None
    assert "pain above 5/10 twice" in message.body
    assert "once" not in message.body
    assert "nothing to worry about" in message.body


def test_flag_tells_the_client_their_physio_will_be_in_touch() -> None:
    message = compose(
        a_decision(outcome="flagged", criteria=(a_result("safety", "failed", "new swelling"),)),
        NOW,
    )
    assert message is not None
    assert message.title == "Your physio will be in touch"
    assert "You reported new swelling." in message.body


def test_held_sends_nothing() -> None:
    assert compose(a_decision(outcome="held"), NOW) is None


def test_message_id_is_the_decision_id() -> None:
    decision = a_decision(outcome="completed")
    message = compose(decision, NOW)
    assert message is not None
    assert message.message_id == decision.decision_id
    assert message.client_id == "c-1"
