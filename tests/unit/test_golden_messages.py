"""Rendered client messages, word for word, against golden files in tests/golden/.

Every outcome in every shipped locale, the coalesced message, the held digest
and the HTML e-mail part. The decisions are built here (fixed stage names,
criteria texts and prescription), so the files test the templates, not a
protocol's current wording. Regenerate after an intended wording change with
`REHABGATE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_golden_messages.py`
and review the diff like any other change to what clients read.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rehabgate.schemas.outbound import (
    CriterionResult,
    PrescribedExercise,
    Prescription,
    ProgressionEvaluated,
)
from rehabgate.services.notifier.messages import Composed, compose
from rehabgate.services.notifier.rendering import Renderer

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("REHABGATE_UPDATE_GOLDEN") == "1"
NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
LOCALES = ["en", "de"]

STAGE_1 = Prescription(
    summary="Gentle daily calf loading to wake the tendon up.",
    exercises=(
        PrescribedExercise(id="two-leg-heel-raise", name="Two-leg heel raises on the floor",
                           sets=3, reps=15, load="body weight", frequency="daily"),
        PrescribedExercise(id="isometric-hold", name="Single-leg isometric hold", sets=5,
                           hold_s=45, frequency="daily"),
    ),
    notes=("Pain up to 5/10 during exercise is acceptable; it should settle by the next morning.",),
)  # fmt: skip
STAGE_2 = Prescription(
    summary="More volume, on the edge of a step, and quick rebounds.",
    exercises=(
        PrescribedExercise(id="one-leg-heel-raise-step", name="One-leg heel raises on a step edge",
                           sets=3, reps=15, load="body weight", frequency="daily"),
        PrescribedExercise(id="quick-rebound", name="Quick-rebounding heel raises", sets=3,
                           reps=20, frequency="3x per week"),
    ),
)  # fmt: skip


def criterion(
    role: str, status: str, client_text: str, cid: str = "c", kind: str = "k"
) -> CriterionResult:
    return CriterionResult(
        id=cid, kind=kind, role=role, status=status, observed=1, threshold=1,  # type: ignore[arg-type]
        explanation="for the physio", client_text=client_text, source="clinic default",
    )  # fmt: skip


def decision(minutes: int = 0, **changes: Any) -> ProgressionEvaluated:
    base: dict[str, Any] = {
        "event_id": uuid.UUID(int=minutes + 1),
        "occurred_at": NOW + timedelta(minutes=minutes),
        "clinic_id": "clinic-a",
        "client_id": "c-golden",
        "decision_id": uuid.UUID(int=minutes + 1),
        "outcome": "unlocked",
        "protocol": "achilles-tendinopathy@1",
        "from_stage": "start-loading",
        "to_stage": "start-strengthening",
        "to_stage_name": "Stage 2: start strengthening",
        "to_stage_number": 2,
        "stage_count": 4,
        "prescription": STAGE_2,
        "summary": "for the physio",
        "criteria": (),
        "cause_event_id": uuid.UUID(int=1000 + minutes),
        "cause_event_type": "session.logged",
    }
    return ProgressionEvaluated(**{**base, **changes})


STAGE_1_FIELDS: dict[str, Any] = {
    "to_stage": "start-loading", "to_stage_name": "Stage 1: start loading",
    "to_stage_number": 1, "prescription": STAGE_1,
}  # fmt: skip

CASES: dict[str, list[ProgressionEvaluated]] = {
    "welcome": [decision(from_stage=None, **STAGE_1_FIELDS)],
    "unlocked": [decision(criteria=(
        criterion("exit", "passed", "3 sessions with pain at 3/10 or less"),
        criterion("exit", "passed", "next-morning pain at 3/10 or less and not worse than before"),
        criterion("exit", "passed", "at least 14 days at this stage"),
    ))],
    "unlocked-by-physio": [decision(decided_by="clinician", clinician_id="physio-7")],
    "regressed": [decision(
        outcome="regressed", from_stage="start-strengthening", **STAGE_1_FIELDS,
        criteria=(criterion("step_back", "failed", "pain above 5/10 in two sessions in a row"),
                  criterion("step_back", "failed", "pain above 5/10 once")),
    )],
    "flagged": [decision(
        outcome="flagged", from_stage="start-loading", **{**STAGE_1_FIELDS, "prescription": None},
        criteria=(criterion("safety", "failed", "new swelling", "new-swelling"),
                  criterion("safety", "passed", "pain at 7/10 or more")),
    )],
    "completed": [decision(
        outcome="completed", to_stage="return-to-sport", to_stage_name="Stage 4: return to sport",
        to_stage_number=4, prescription=None,
        criteria=(criterion("exit", "passed", "hop test: injured side at least 90% of the other"),),
    )],
    "held-digest": [decision(
        outcome="held", from_stage="start-loading", **STAGE_1_FIELDS,
        criteria=(criterion("exit", "passed", "3 sessions with pain at 3/10 or less"),
                  criterion("exit", "failed", "at least 14 days at this stage"),
                  criterion("exit", "unknown", "next-morning pain at 3/10 or less")),
    )],
    "load-reduced": [decision(
        outcome="held", from_stage="start-loading", **STAGE_1_FIELDS,
        criteria=(criterion("step_back", "failed", "sessions that were too hard (an effort of "
                            "10/10) in your last session: lower the weight by 10% next session",
                            "effort-10", "too_hard"),
                  criterion("exit", "passed", "at least 4 days at this stage"),
                  criterion("exit", "failed", "2 or more reps over your target on the last set, "
                            "in 2 sessions in a row")),
    )],
    "reviewed-approved": [decision(
        outcome="held", from_stage="start-loading", **STAGE_1_FIELDS, decided_by="clinician",
        clinician_id="physio-7", cause_event_type="clinician.action",
        summary="held: 1 of 4 exit criteria not met",
        criteria=(criterion("exit", "passed", "your physio's approval"),
                  criterion("exit", "failed", "at least 14 days at this stage")),
    )],
    "reviewed-held": [decision(
        outcome="held", from_stage="start-loading", **STAGE_1_FIELDS, decided_by="clinician",
        clinician_id="physio-7", cause_event_type="clinician.action",
        summary="held by clinician",
    )],
    "coalesced": [
        decision(0, outcome="held", from_stage="start-loading", **STAGE_1_FIELDS),
        decision(2, criteria=(criterion("exit", "passed", "3 sessions with pain at 3/10 or less"),)),
        decision(4, outcome="flagged", criteria=(criterion("safety", "failed", "new swelling"),),
                 prescription=None),
    ],
}  # fmt: skip


def render(case: str, locale: str, held_digest: bool = True) -> Composed:
    composed = compose(CASES[case], NOW, locale, Renderer(), held_digest=held_digest)
    assert composed is not None
    return composed


def check_golden(path: Path, text: str) -> None:
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with REHABGATE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs (REHABGATE_UPDATE_GOLDEN=1)"


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_text_matches_golden(case: str, locale: str) -> None:
    message = render(case, locale).message
    assert message.locale == locale
    check_golden(GOLDEN / locale / f"{case}.txt", f"{message.title}\n\n{message.body}\n")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("case", ["unlocked", "coalesced"])
def test_email_html_matches_golden(case: str, locale: str) -> None:
    check_golden(GOLDEN / locale / f"{case}.email.html", render(case, locale).html)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("case", ["reviewed-approved", "reviewed-held"])
def test_a_physios_review_is_sent_without_the_held_digest(case: str, locale: str) -> None:
    """Issue 17: the client hears from their physio after an approval or a hold."""
    message = render(case, locale, held_digest=False).message
    assert message.outcome == "held"
    words = {"en": "Your physio reviewed your progress", "de": "Ihr Therapieteam hat"}
    assert words[locale] in message.body


@pytest.mark.parametrize("locale", LOCALES)
def test_a_load_reduction_is_sent_without_the_held_digest(locale: str) -> None:
    message = render("load-reduced", locale, held_digest=False).message
    assert message.outcome == "held"
    assert "10%" in message.body


def test_a_regional_locale_falls_back_to_its_language_then_to_english() -> None:
    assert render("welcome", "de-AT").message.locale == "de"
    assert render("welcome", "fr").message.locale == "en"
