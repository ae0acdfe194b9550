"""The fault harness's own checks, without Redis or processes: the offline-sync
workload is what it claims, and the invariants offline-sync adds (transitions in
event time, multi-stage decisions, contradictory messages) catch what they name."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from rehabgate.schemas.inbound import ClientEnrolled, parse_inbound
from rehabgate.services.gatekeeper.domain import Rejected, decide, enroll
from tests.faults.harness import (
    Outgoing,
    _phone_day,
    _protocol,
    contradictions,
    in_event_time,
    model_transitions,
    multi_stage,
    offline_workload,
    published_in_order,
    transitions_in_event_time,
)


def _apply_in_arrival_order(items: list[Outgoing]) -> list[dict[str, Any]]:
    """Every decision the pure domain records for `items` in this arrival order, as the
    gatekeeper keeps them (the decision on record per cause is the newest)."""
    protocol = _protocol()
    state, recorded, out = None, {}, []
    for item in items:
        event = parse_inbound(item.fields["event"])
        try:
            if isinstance(event, ClientEnrolled):
                decision = enroll(protocol, state, event)
            else:
                assert state is not None
                decision = decide(protocol, state, event, recorded)  # type: ignore[arg-type]
        except Rejected:
            continue
        state = decision.state
        for evaluation in decision.evaluations:
            recorded[str(evaluation.cause_event_id)] = evaluation
            out.append(json.loads(evaluation.model_dump_json()))
    return out


def _clients(seed: int, events: int) -> dict[str, list[Outgoing]]:
    chunks, _ = offline_workload(seed, events, 0.2)
    clients: dict[str, list[Outgoing]] = defaultdict(list)
    for item in (o for chunk in chunks for o in chunk):
        assert item.client_id is not None
        clients[item.client_id].append(item)
    return clients


def test_offline_workload_holds_back_days_of_phone_events_for_a_fifth_of_the_clients() -> None:
    _, plan = offline_workload(3, 4000, 0.2)
    clients = _clients(3, 4000)
    assert plan["offline_clients"] >= 0.1 * plan["clients"] == 0.1 * len(clients)
    assert set(plan["offline_days"]) <= set(range(1, 8))
    assert plan["bursts"] == plan["offline_windows"] > 0
    late = [c for c, items in clients.items() if not published_in_order(items)]
    assert 0 < len(late) <= plan["offline_clients"]
    for items in clients.values():
        # Whatever the order, the enrolment comes first and the clinic's events keep
        # their own order.
        events = [json.loads(o.fields["event"]) for o in items]
        assert events[0]["event_type"] == "client.enrolled"
        clinic = [e["occurred_at"] for e in events if _phone_day(e) is None]
        assert clinic == sorted(clinic)


def test_records_in_event_time_are_the_model_and_ignoring_corrections_is_not() -> None:
    """Through the pure domain in the offline-sync arrival order: the effective
    transitions equal the model's, every decision moves at most one stage, and the
    check has teeth: reading the same records without the corrections differs."""
    corrected = caught = 0
    for client_id, items in _clients(5, 4000).items():
        decisions = _apply_in_arrival_order(items)
        causes = {o.event_id: json.loads(o.fields["event"]) for o in items}
        assert transitions_in_event_time(decisions) == model_transitions(items), client_id
        assert multi_stage(decisions, causes) == 0
        if any(d["corrected_after"] for d in decisions):
            corrected += 1
            originals = [d for d in decisions if not d["corrected_after"]]
            caught += transitions_in_event_time(originals) != model_transitions(items)
    assert corrected > 0
    assert caught > 0


def _d(n: int, outcome: str, src: str | None, dst: str | None, **extra: Any) -> dict[str, Any]:
    return {"decision_id": f"d{n}", "cause_event_id": f"e{n}", "outcome": outcome,
            "from_stage": src, "to_stage": dst, "summary": "", "supersedes": None,
            "superseded_outcome": None, "corrected_after": None, **extra}  # fmt: skip


def _told(*messages: list[dict[str, Any]]) -> list[set[str]]:
    by_id = {d["decision_id"]: d for m in messages for d in m}
    sent = [{"decision_ids": [d["decision_id"] for d in m]} for m in messages]
    return contradictions(sent, by_id)


def test_an_in_order_story_is_no_contradiction_even_unlock_step_back_unlock() -> None:
    assert (
        _told(
            [_d(0, "unlocked", None, "s1")],
            [_d(1, "held", "s1", "s1"), _d(2, "unlocked", "s1", "s2")],
            [_d(3, "regressed", "s2", "s1")],
            [_d(4, "flagged", "s1", "s1")],
            [_d(5, "unlocked", "s1", "s2")],
            [_d(6, "unlocked", "s2", "s3"), _d(7, "completed", "s3", "s3")],
        )
        == [set()] * 6
    )


def test_a_second_unlock_of_a_stage_without_a_step_back_is_a_contradiction() -> None:
    assert _told(
        [_d(0, "unlocked", None, "s1")],
        [_d(1, "unlocked", "s1", "s2")],
        [_d(2, "unlocked", "s1", "s2")],
    ) == [set(), set(), {"gap"}]


def test_a_step_back_taken_back_silently_shows_as_a_gap() -> None:
    # Told "stepped back to s1"; a late event re-decided it as a hold (no message);
    # the next unlock starts from s2, where the client was never told they are.
    assert _told(
        [_d(0, "unlocked", None, "s1"), _d(1, "unlocked", "s1", "s2")],
        [_d(2, "regressed", "s2", "s1")],
        [_d(3, "unlocked", "s2", "s3")],
    )[-1] == {"gap"}


def test_withdrawals_must_take_back_something_told() -> None:
    told = [_d(0, "unlocked", None, "s1"), _d(1, "unlocked", "s1", "s2")]
    withdrawal = _d(9, "held", "s1", "s1", supersedes="d1", superseded_outcome="unlocked",
                    corrected_after="e8", notice="taken_back")  # fmt: skip
    assert _told(told, [withdrawal]) == [set(), set()]
    assert _told(told[:1], [withdrawal]) == [set(), {"untold_withdrawal"}]


def test_a_decision_the_gatekeeper_marked_silent_must_not_be_told() -> None:
    earlier = _d(5, "unlocked", "s1", "s2", corrected_after="e8", notice="silent")
    assert _told([_d(0, "unlocked", None, "s1")], [earlier]) == [set(), {"silent_decision_told"}]


def test_unlock_step_back_unlock_caused_by_one_late_event_is_a_flip_flop() -> None:
    own = _d(5, "unlocked", "s1", "s2", summary="late checkin.logged from ...")
    back = _d(6, "regressed", "s2", "s1", corrected_after="e5", supersedes="d60",
              superseded_outcome="held")  # fmt: skip
    again = _d(7, "unlocked", "s1", "s2", corrected_after="e5", supersedes="d70",
               superseded_outcome="held")  # fmt: skip
    assert _told([_d(0, "unlocked", None, "s1")], [own, back, again]) == [set(), {"flip_flop"}]


def test_in_event_time_replaces_superseded_decisions_and_keeps_a_missed_one() -> None:
    first = _d(1, "unlocked", "s1", "s2", occurred_at="2024-03-05T18:00:00+00:00")
    fix = _d(2, "held", "s1", "s1", occurred_at="2024-03-05T18:00:00+00:00",
             cause_event_id="e1", supersedes="d1", superseded_outcome="unlocked")  # fmt: skip
    early = _d(3, "flagged", "s1", "s1", occurred_at="2024-03-04T07:00:00+00:00")
    assert [d["decision_id"] for d in in_event_time([first, early, fix, first])] == ["d3", "d2"]
    # A second correction of the same (already superseded) decision leaves two decisions
    # for one cause: both stay, so the comparison with the model counts it.
    other = {**fix, "decision_id": "d4", "outcome": "regressed", "to_stage": "s0"}
    assert len(in_event_time([first, fix, other])) == 3 - 1


def test_multi_stage_spares_only_a_clinician_action_with_a_target() -> None:
    stages = [s.id for s in _protocol().stages]
    jump = _d(1, "unlocked", stages[0], stages[2])
    assert multi_stage([jump], {}) == 1
    targeted = {"e1": {"event_type": "clinician.action", "target_stage": stages[2]}}
    assert multi_stage([jump, jump], targeted) == 0
    assert multi_stage([_d(2, "regressed", stages[2], stages[1])], {}) == 0


def test_offline_workload_is_seeded() -> None:
    first, again = offline_workload(11, 800, 0.2), offline_workload(11, 800, 0.2)
    assert [[o.fields for o in c] for c in first[0]] == [[o.fields for o in c] for c in again[0]]
