"""Event time, not arrival time (issue 14), through the use case on the in-memory
store: for any arrival order and batching of a history, the decisions on record,
read in event time (a correction replacing the decision it supersedes), are the
ones in-order arrival records, and no decision moves more than one stage."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.services.gatekeeper.audit.history import build_timeline
from rehabgate.services.gatekeeper.audit.verify import StoredEntry
from rehabgate.services.gatekeeper.domain import decide, enroll
from rehabgate.services.gatekeeper.domain.decide import ProgressEvent, replay
from rehabgate.services.gatekeeper.domain.history import event_order
from rehabgate.services.gatekeeper.process import Entry, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from tests.fake_client_store import InMemoryClientStore
from tests.unit.builders import CLIENT, a_checkin, a_session, an_enrolment, at
from tests.unit.test_decide import _events_from, day_step

PROTOCOLS = load_protocols()
ACHILLES = PROTOCOLS["achilles-tendinopathy@1"]
ENROLMENT = an_enrolment()
#: The server's clock for intake's time window: long after any generated history.
NOW = at(days=400).timestamp()

Transition = tuple[str, str | None, str | None]


def entries(events: list[Any]) -> list[Entry]:
    return [
        Entry(f"{i + 1}-0", {b"event": e.model_dump_json().encode()}) for i, e in enumerate(events)
    ]


def deliver(store: InMemoryClientStore, batches: list[list[Any]]) -> None:
    async def run() -> None:
        for batch in batches:
            await process_batch(entries(batch), store, PROTOCOLS, now=NOW)

    asyncio.run(run())


def on_record(store: InMemoryClientStore) -> dict[str, ProgressionEvaluated]:
    """The decision on record per cause event: the last written for it."""
    record: dict[str, ProgressionEvaluated] = {}
    for decision in store.evaluated:
        record[str(decision.cause_event_id)] = decision
    return record


def transitions(record: dict[str, ProgressionEvaluated], events: list[Any]) -> list[Transition]:
    """Stage changes, flags and completions, in the events' time order."""
    out = []
    for event in sorted(events, key=event_order):
        decision = record.get(str(event.event_id))
        if decision is not None and decision.outcome != "held":
            out.append((decision.outcome, decision.from_stage, decision.to_stage))
    return out


def model(events: list[ProgressEvent]) -> dict[str, ProgressionEvaluated]:
    """What in-order, once-only arrival records: the pure reference."""
    return {
        str(d.evaluation.cause_event_id): d.evaluation
        for d in replay(ACHILLES, ENROLMENT, events)[1:]
        if d.evaluation is not None
    }


def moves_at_most_one_stage(decision: ProgressionEvaluated) -> bool:
    if decision.from_stage is None or decision.to_stage is None:
        return True
    return (
        abs(ACHILLES.stage_index(decision.to_stage) - ACHILLES.stage_index(decision.from_stage))
        <= 1
    )


@settings(max_examples=80, deadline=None)
@given(days=st.lists(day_step, min_size=8, max_size=40), data=st.data())
def test_any_arrival_order_records_the_in_order_transitions(
    days: list[dict[str, Any]], data: st.DataObject
) -> None:
    events = _events_from(days)
    arrival = data.draw(st.permutations(events))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(arrival)), max_size=8)))
    batches = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True)]
    store = InMemoryClientStore()

    deliver(store, [[ENROLMENT], *[b for b in batches if b]])

    expected = transitions(model(events), events)
    assert transitions(on_record(store), events) == expected
    assert all(moves_at_most_one_stage(d) for d in store.evaluated)
    state = store.clients[CLIENT].state
    assert state is not None
    assert state.stage_id == replay(ACHILLES, ENROLMENT, events)[-1].state.stage_id


def healthy_day(day: int) -> list[Any]:
    """A day the Achilles protocol's first stage counts toward its exit."""
    return [
        a_session(
            occurred_at=at(days=day, hours=18),
            pain_during=2,
            metrics={"single_leg_heel_raise_reps": 25},
        ),
        a_checkin(occurred_at=at(days=day + 1, hours=7), morning_pain=1),
    ]


def test_a_late_flare_withdraws_a_later_unlock_with_an_explicit_correction() -> None:
    """In order, the client unlocks stage 2; a painful session from before the unlock,
    synced late, means in-order arrival would have held. The unlock is corrected by a
    decision naming it, and the state goes back."""
    history = [e for day in range(16) for e in healthy_day(day)]
    store = InMemoryClientStore()
    deliver(store, [[ENROLMENT], history])
    [unlock] = [d for d in store.evaluated if d.outcome == "unlocked" and d.from_stage]
    # a painful session the evening before the check-in that unlocked
    late_flare = a_session(occurred_at=unlock.occurred_at - timedelta(hours=10), pain_during=8)

    deliver(store, [[late_flare]])

    corrections = [d for d in store.evaluated if d.supersedes is not None]
    withdrawn = [c for c in corrections if c.supersedes == unlock.decision_id]
    assert len(withdrawn) == 1
    assert withdrawn[0].superseded_outcome == "unlocked"
    assert withdrawn[0].outcome != "unlocked"
    assert withdrawn[0].summary.startswith("corrected after a late session.logged")
    told = [d.notice for d in store.evaluated if d.corrected_after or d.summary.startswith("late")]
    assert told.count("taken_back") == 1  # the client hears of the take-back once
    state = store.clients[CLIENT].state
    assert state is not None
    assert state.stage_id == model_stage([*history, late_flare])
    # the physio's timeline shows the corrections under the late event's entry
    entries = [
        StoredEntry(f"{i + 1}-0", json.dumps(body), "h")
        for i, body in enumerate(store.clients[CLIENT].entries)
    ]
    [late_item] = [i for i in build_timeline(CLIENT, entries).items if i.corrections]
    assert late_item.event_id == str(late_flare.event_id)
    assert late_item.corrections[0].superseded_outcome == "unlocked"


def model_stage(events: list[ProgressEvent]) -> str:
    return replay(ACHILLES, ENROLMENT, events)[-1].state.stage_id


def test_a_late_event_never_jumps_stages_in_one_decision() -> None:
    """Before: the late event's one decision moved the client from its stored stage
    to the replayed final one, however many stages apart."""
    history = [e for day in range(40) for e in healthy_day(day)]
    first, rest = history[:1], history[1:]
    store = InMemoryClientStore()

    deliver(store, [[ENROLMENT], rest, first])  # the very first session comes last

    assert all(moves_at_most_one_stage(d) for d in store.evaluated)
    assert transitions(on_record(store), history) == transitions(model(history), history)


def test_a_late_event_that_changes_nothing_corrects_nothing() -> None:
    history = [e for day in range(6) for e in healthy_day(day)]
    store = InMemoryClientStore()
    deliver(store, [[ENROLMENT], history[2:]])
    before = len(store.evaluated)

    deliver(store, [history[:2]])

    added = store.evaluated[before:]
    assert [d.supersedes for d in added] == [None, None]
    assert all(d.summary.startswith("late ") for d in added)


def test_the_same_late_event_twice_is_a_duplicate() -> None:
    history = [e for day in range(4) for e in healthy_day(day)]
    store = InMemoryClientStore()
    deliver(store, [[ENROLMENT], history[1:], history[:1]])
    count = len(store.evaluated)

    deliver(store, [history[:1]])

    assert len(store.evaluated) == count


def test_in_order_arrival_records_exactly_the_model() -> None:
    history = [e for day in range(20) for e in healthy_day(day)]
    store = InMemoryClientStore()
    deliver(store, [[ENROLMENT], history])

    record = on_record(store)
    expected = model(history)
    assert {k: v.outcome for k, v in record.items() if k in expected} == {
        k: v.outcome for k, v in expected.items()
    }
    assert json.dumps([d.decision_id for d in store.evaluated if d.supersedes], default=str) == (
        "[]"
    )


def test_live_decide_and_enroll_still_agree_with_replay() -> None:
    state = enroll(ACHILLES, None, ENROLMENT).state
    history = [e for day in range(3) for e in healthy_day(day)]
    for event in history:
        state = decide(ACHILLES, state, event).state
    assert state.stage_id == model_stage(history)


def test_a_stage_reached_earlier_than_the_client_was_told_is_no_news_to_them() -> None:
    """In order, the client was told "stage 2" when one morning's check-in unlocked
    it; the previous morning's check-in arrives last and unlocks it a day earlier.
    The record is corrected (the unlock moves to its real day); the client, told
    of stage 2 already, hears nothing new (seen by the offline-sync fault run)."""
    history = [e for day in range(16) for e in healthy_day(day)]
    unlocked_by = history_unlock_cause(history)
    late = next(e for e in history if e.event_id == unlocked_by)
    idx = history.index(late)
    earlier_checkin = history[idx - 2]  # the morning before, same kind
    rest = [e for e in history if e is not earlier_checkin]
    store = InMemoryClientStore()
    deliver(store, [[ENROLMENT], rest])
    before = len(store.evaluated)

    deliver(store, [[earlier_checkin]])

    added = store.evaluated[before:]
    assert added, "the late check-in is decided"
    assert {d.notice for d in added} == {"silent"}
    assert transitions(on_record(store), history) == transitions(model(history), history)


def history_unlock_cause(history: list[Any]) -> Any:
    [unlock] = [
        d.evaluation
        for d in replay(ACHILLES, ENROLMENT, history)[1:]
        if d.evaluation is not None and d.evaluation.outcome == "unlocked"
    ]
    return unlock.cause_event_id
