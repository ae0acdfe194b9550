"""Events may arrive late, twice, or out of order: the client must end where an
in-order, once-only arrival would have put them (SPEC §2)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rehabgate.services.gatekeeper.domain import ClientState, decide, enroll
from rehabgate.services.gatekeeper.domain.decide import ProgressEvent, replay
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from tests.unit.builders import a_checkin, a_clinician_action, a_session, an_enrolment, at
from tests.unit.test_decide import _events_from, day_step

ACHILLES = load_protocols()["achilles-tendinopathy@1"]


def arrive(events: list[ProgressEvent]) -> ClientState:
    state = enroll(ACHILLES, None, ENROLMENT).state
    for event in events:
        state = decide(ACHILLES, state, event).state
    return state


ENROLMENT = an_enrolment()


def essence(state: ClientState) -> dict[str, Any]:
    """What must not depend on arrival order."""
    fields = ("stage_id", "stage_entered_at", "status", "sessions", "checkins", "approvals")
    return {name: getattr(state, name) for name in fields}


@settings(max_examples=60, deadline=None)
@given(days=st.lists(day_step, min_size=5, max_size=40), data=st.data())
def test_shuffled_and_duplicated_arrival_ends_in_the_in_order_state(
    days: list[dict[str, Any]], data: st.DataObject
) -> None:
    events = _events_from(days)
    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=5)) if events else []

    in_order = arrive(events)
    out_of_order = arrive([*shuffled, *repeats])

    assert essence(out_of_order) == essence(in_order)


def test_replay_gives_the_same_decisions_as_live_arrival() -> None:
    events: list[ProgressEvent] = []
    for day in range(16):
        events.append(a_session(occurred_at=at(days=day, hours=18), pain_during=3,
                                metrics={"single_leg_heel_raise_reps": 12}))  # fmt: skip
        events.append(a_checkin(occurred_at=at(days=day + 1, hours=7), morning_pain=2))
    state = enroll(ACHILLES, None, ENROLMENT).state
    live = []
    for event in events:
        decision = decide(ACHILLES, state, event)
        state = decision.state
        live.append(decision.evaluation)

    replayed = [d.evaluation for d in replay(ACHILLES, ENROLMENT, events)[1:]]

    assert replayed == live
    assert [e.outcome for e in live if e is not None].count("unlocked") == 1


def test_a_late_painful_session_explains_the_re_evaluation() -> None:
    state = enroll(ACHILLES, None, ENROLMENT).state
    for day in range(3):
        state = decide(ACHILLES, state, a_session(occurred_at=at(days=day, hours=18))).state
    late = a_session(occurred_at=at(days=1, hours=9), pain_during=7)

    decision = decide(ACHILLES, state, late)

    assert decision.evaluation is not None
    assert decision.evaluation.outcome == "flagged"
    assert decision.evaluation.summary.startswith("late session.logged")
    assert decision.state.status == "flagged"


def test_a_late_clinician_action_is_still_recorded_as_the_clinicians() -> None:
    state = enroll(ACHILLES, None, ENROLMENT).state
    for day in range(3):
        state = decide(ACHILLES, state, a_session(occurred_at=at(days=day, hours=18))).state
    late_hold = a_clinician_action(action="hold", occurred_at=at(days=1, hours=9))

    decision = decide(ACHILLES, state, late_hold)

    assert decision.evaluation is not None
    assert decision.evaluation.decided_by == "clinician"
    assert decision.evaluation.clinician_id == late_hold.clinician_id
    assert decision.evaluation.clinician_reason == late_hold.reason
    assert decision.state.status == "on_hold"
