"""Late work is bounded (issue 14, item 4): a late event replays from a checkpoint
of the client's state before its day, not from the enrolment, and still records
what in-order arrival would have."""

from __future__ import annotations

from typing import Any

from rehabgate.services.gatekeeper.client_store import (
    checkpoints_kept,
    pack_checkpoint,
    unpack_checkpoint,
)
from rehabgate.services.gatekeeper.domain.history import day_number, decode_state, encode_state
from tests.fake_client_store import InMemoryClientStore
from tests.unit.builders import CLIENT, at
from tests.unit.test_event_time import (
    ENROLMENT,
    deliver,
    healthy_day,
    model,
    model_stage,
    on_record,
    transitions,
)


def in_order(days: int) -> tuple[InMemoryClientStore, list[Any]]:
    history = [e for day in range(days) for e in healthy_day(day)]
    store = InMemoryClientStore()
    deliver(store, [[ENROLMENT], *(history[i : i + 10] for i in range(0, len(history), 10))])
    return store, history


def test_a_late_event_reads_only_the_entries_since_the_checkpoint_before_it() -> None:
    store, history = in_order(60)
    late = healthy_day(56)[0].model_copy(update={"occurred_at": at(days=56, hours=12)})

    deliver(store, [[late]])

    client = store.clients[CLIENT]
    assert client.history_reads == 1
    # From the checkpoint of day 56: that day's and later entries (four sessions and
    # five morning check-ins), not the 121 of the whole history.
    assert client.entries_read == 9
    events = [*history, late]
    assert transitions(on_record(store), events) == transitions(model(events), events)
    assert client.state is not None
    assert client.state.stage_id == model_stage(events)


def test_a_late_event_costs_what_its_span_does_not_what_the_history_does() -> None:
    short_store, _ = in_order(20)
    long_store, _ = in_order(80)
    for store, days in ((short_store, 20), (long_store, 80)):
        deliver(store, [[healthy_day(days - 3)[0].model_copy(
            update={"occurred_at": at(days=days - 3, hours=12)})]])  # fmt: skip

    assert short_store.clients[CLIENT].entries_read == long_store.clients[CLIENT].entries_read


def test_checkpoints_after_a_late_event_are_dropped_and_not_used() -> None:
    store, history = in_order(30)
    first = healthy_day(20)[0].model_copy(update={"occurred_at": at(days=20, hours=12)})
    deliver(store, [[first]])
    assert max(store.clients[CLIENT].checkpoints) <= day_number(at(days=20))
    # An earlier late event than the first, in a later batch: its checkpoint is
    # older, and both late events are in the log it replays.
    second = healthy_day(12)[0].model_copy(update={"occurred_at": at(days=12, hours=12)})

    deliver(store, [[second]])

    events = [*history, first, second]
    assert transitions(on_record(store), events) == transitions(model(events), events)
    assert max(store.clients[CLIENT].checkpoints) <= day_number(at(days=12))


def test_in_one_batch_a_late_event_older_than_the_loaded_checkpoint_reloads() -> None:
    store, history = in_order(30)
    newer = healthy_day(25)[0].model_copy(update={"occurred_at": at(days=25, hours=12)})
    older = healthy_day(3)[0].model_copy(update={"occurred_at": at(days=3, hours=12)})

    deliver(store, [[newer, older]])

    assert store.clients[CLIENT].history_reads == 2
    events = [*history, newer, older]
    assert transitions(on_record(store), events) == transitions(model(events), events)
    assert store.clients[CLIENT].state.stage_id == model_stage(events)  # type: ignore[union-attr]


def test_a_late_event_older_than_every_checkpoint_replays_from_the_enrolment() -> None:
    store, history = in_order(120)
    assert min(store.clients[CLIENT].checkpoints) > day_number(at(days=2))
    late = healthy_day(1)[0].model_copy(update={"occurred_at": at(days=1, hours=12)})

    deliver(store, [[late]])

    assert store.clients[CLIENT].entries_read == 241  # the whole trail
    events = [*history, late]
    assert transitions(on_record(store), events) == transitions(model(events), events)


def test_a_client_keeps_about_fourteen_checkpoints_whatever_their_history() -> None:
    store, _ = in_order(300)
    kept = sorted(store.clients[CLIENT].checkpoints)
    newest = day_number(at(days=300))  # the last morning check-in's day
    assert kept[-8:] == list(range(newest - 7, newest + 1))  # the last week, daily
    assert all(d >= newest - 42 for d in kept)
    assert len({d // 7 for d in kept[:-8]}) == len(kept[:-8])  # one a week before
    assert 12 <= len(kept) <= 15


def test_the_retention_rule_keeps_the_first_of_each_week() -> None:
    days = set(range(700, 800))
    kept = checkpoints_kept(days, 799)
    assert set(range(792, 800)) <= kept
    assert 763 in kept  # 763 = 109 * 7: the first of its week
    assert 764 not in kept
    assert 756 not in kept  # older than 42 days


def test_a_checkpoint_is_kept_deflated_and_a_plain_one_still_reads() -> None:
    store, _ = in_order(30)
    state = store.clients[CLIENT].state
    assert state is not None
    stored = encode_state(state)

    packed = pack_checkpoint(stored)

    assert len(packed) * 3 < len(stored)
    assert unpack_checkpoint(packed) == decode_state(stored)
    assert unpack_checkpoint(stored) == decode_state(stored)  # as kept before deflating
