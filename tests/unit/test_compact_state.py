"""The state stays small however long a stage lasts (issue 19): a session's logged
sets are read against the prescription when it is logged, and only the newest
sessions keep their last sets. The criteria still see what the sets said."""

from __future__ import annotations

from typing import Any

from rehabgate.services.gatekeeper.domain.decide import replay
from rehabgate.services.gatekeeper.domain.history import EXERCISES_KEPT
from tests.unit.builders import an_enrolment
from tests.unit.test_clinical_fidelity import (
    MONDAY,
    PROTOCOLS,
    local,
    morning,
    result,
    run,
    session,
)

STAGE_1 = {"two-leg-heel-raise": 15, "one-leg-heel-raise": 10, "seated-heel-raise": 10,
           "eccentric-heel-raise": 10}  # fmt: skip


def as_prescribed(short_of: str | None = None) -> list[dict[str, Any]]:
    """Achilles stage 1's four exercises, 3 sets each; `short_of`: one set only."""
    return [
        {"exercise_id": e, "sets": [{"reps": reps, "rpe": 5}] * (1 if e == short_of else 3)}
        for e, reps in STAGE_1.items()
    ]


def test_a_short_session_weeks_ago_still_does_not_count_and_is_named() -> None:
    days = range(1, 16)
    events = []
    for d in days:
        sets = as_prescribed("one-leg-heel-raise" if d == 1 else None)
        events += [session(d, exercises=sets, metrics={"single_leg_heel_raise_reps": 5}),
                   morning(d + 1)]  # fmt: skip

    decisions = run("achilles-tendinopathy@2", events)

    last = result(decisions[-2], "sessions")  # the decision on the last session
    assert last.observed == len(days) - 1
    assert "One-leg heel raises on the floor: 1 of 3 sets (3 x 10 prescribed)" in last.explanation


def test_only_the_newest_sessions_keep_their_last_sets() -> None:
    events = []
    for d in range(1, 30):
        events += [session(d, exercises=as_prescribed(), metrics={"single_leg_heel_raise_reps": 5}),
                   morning(d + 1)]  # fmt: skip
    enrolment = an_enrolment(protocol="achilles-tendinopathy@2", occurred_at=local(0, 8),
                             start_date=MONDAY.date())  # fmt: skip
    state = replay(PROTOCOLS["achilles-tendinopathy@2"], enrolment, events)[-1].state

    with_sets = [s for s in state.sessions if s.exercises]
    assert len(with_sets) == EXERCISES_KEPT
    assert with_sets == list(state.sessions[-EXERCISES_KEPT:])
    assert all(len(e.sets) == 1 for s in with_sets for e in s.exercises)
    assert all(s.short == () for s in state.sessions)


def test_a_long_run_of_short_sessions_names_the_latest_three_and_counts_the_rest() -> None:
    events = []
    for d in range(1, 7):
        events += [session(d, exercises=as_prescribed("one-leg-heel-raise"),
                           metrics={"single_leg_heel_raise_reps": 5}), morning(d + 1)]  # fmt: skip

    explanation = result(run("achilles-tendinopathy@2", events)[-2], "sessions").explanation

    assert explanation.count("1 of 3 sets") == 3
    assert explanation.endswith("(and 3 earlier sessions)")
    assert "Sat 7 Nov" in explanation  # the latest
    assert "Tue 3 Nov" not in explanation  # the first, counted only
