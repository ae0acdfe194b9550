"""The notifier on its default channel (the client-messages stream) against a
real server: exactly once per decision, physio alerts, contacts and locales,
quiet hours and coalescing with explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aredis

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import evaluated_dead_letter_stream
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.notifier.coalescing import place
from rehabgate.services.notifier.outbox import store
from rehabgate.services.notifier.outbox.store import Entry
from rehabgate.services.notifier.process import Notifier, process_decisions
from tests.events import unique_client
from tests.integration.notifier_support import (
    a_decision,
    a_partition,
    alerts,
    entry,
    flagged,
    messages,
    notifier,
    receipts,
    set_contact,
)

pytestmark = pytest.mark.integration
EVENING = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


async def test_each_decision_becomes_exactly_one_message_and_receipt(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    decision = a_decision(client)
    n = notifier(async_redis, p)

    first = await process_decisions([entry(decision)], n)
    again = await process_decisions([entry(decision), entry(decision)], n)

    assert first["delivered"] == 1
    assert again["duplicate"] == 2
    assert again["delivered"] == 0
    sent = await messages(async_redis, p)
    assert [(m.message_id, m.decision_ids) for m in sent] == [
        (decision.decision_id, (decision.decision_id,))
    ]
    assert [(r.event_type, r.decision_id, r.channel) for r in await receipts(async_redis, p)] == [
        ("message.delivered", decision.decision_id, "stream")
    ]


async def test_held_decisions_send_nothing(async_redis: aredis.Redis) -> None:
    p, client = a_partition(), unique_client()
    held = a_decision(client, outcome="held")

    fates = await process_decisions([entry(held)], notifier(async_redis, p))

    assert fates == {"no_message": 1}
    assert await messages(async_redis, p) == []


async def test_held_digest_sends_a_progress_note(async_redis: aredis.Redis) -> None:
    p, client = a_partition(), unique_client()

    await process_decisions(
        [entry(a_decision(client, outcome="held"))], notifier(async_redis, p, held_digest=True)
    )

    assert [m.outcome for m in await messages(async_redis, p)] == ["held"]


async def test_unreadable_decision_is_dead_lettered(async_redis: aredis.Redis) -> None:
    p = a_partition()

    fates = await process_decisions(
        [("9-0", {b"event": b'{"outcome": "unlocked"}'})], notifier(async_redis, p)
    )

    assert fates["dead_lettered"] == 1
    assert await async_redis.xlen(evaluated_dead_letter_stream(p)) == 1


async def test_a_flag_alerts_the_physio_channel_once_with_ids_and_reason(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    decision = flagged(client)
    n = notifier(async_redis, p)

    await process_decisions([entry(decision)], n)
    await process_decisions([entry(decision)], n)

    (alert,) = await alerts(async_redis, p)
    assert (alert.decision_id, alert.client_id, alert.rule_ids, alert.reason) == (
        decision.decision_id, client, ("new-swelling",), "flagged: new swelling",
    )  # fmt: skip
    (message,) = await messages(async_redis, p)
    assert message.title == "Your physio will be in touch"


async def test_the_clients_locale_picks_the_language(async_redis: aredis.Redis) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "stream", "app-user-17", locale="de")

    await process_decisions([entry(a_decision(client))], notifier(async_redis, p))

    (message,) = await messages(async_redis, p)
    assert (message.locale, message.title) == ("de", "Willkommen in Ihrem Reha-Programm")


async def test_an_erased_contact_falls_back_to_the_stream(async_redis: aredis.Redis) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "email", "someone@example.org", locale="de")
    await async_redis.delete(ClientKeys(client, p).contact)

    await process_decisions([entry(a_decision(client))], notifier(async_redis, p))

    (message,) = await messages(async_redis, p)
    assert message.locale == "en"


async def test_a_channel_that_is_not_configured_gives_a_failed_receipt(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "email", "someone@example.org")
    decision = a_decision(client)

    fates = await process_decisions([entry(decision)], notifier(async_redis, p))

    assert fates["failed"] == 1
    assert await messages(async_redis, p) == []
    (receipt,) = await receipts(async_redis, p)
    assert (receipt.event_type, receipt.channel, receipt.reason) == (
        "message.failed", "email", "email channel not configured",
    )  # fmt: skip


async def test_a_message_due_in_quiet_hours_is_held_until_they_end(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "stream", "app-user-3",
                      quiet_hours={"start": "21:00", "end": "07:30", "timezone": "Europe/Berlin"})  # fmt: skip
    n = notifier(async_redis, p)
    decision = a_decision(client, at=EVENING)

    fates = await process_decisions([entry(decision)], n, now=EVENING)
    morning = datetime(2026, 11, 21, 6, 30, tzinfo=UTC)  # 07:30 in Berlin
    before = await n.outbox.ready_ids(morning - timedelta(seconds=1), 100)
    sent = await n.dispatcher.send(await n.outbox.ready_ids(morning, 100), morning)
    again = await n.dispatcher.send(await n.outbox.ready_ids(morning, 100), morning)

    assert fates["scheduled"] == 1
    assert fates["delivered"] == 0
    assert before == []
    assert sent["delivered"] == 1
    assert again == {}
    (message,) = await messages(async_redis, p)
    assert message.created_at == morning
    assert message.decision_ids == (decision.decision_id,)


async def test_decisions_close_in_time_become_one_message_across_batches(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    n = notifier(async_redis, p, coalesce_window_s=300)
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    unlocked = a_decision(client, at=t0)
    flag = flagged(client, occurred_at=t0 + timedelta(minutes=2))

    first = await process_decisions([entry(unlocked)], n, now=t0)
    second = await process_decisions([entry(flag, 2)], n, now=t0 + timedelta(minutes=2))
    early = await n.dispatcher.send(await n.outbox.ready_ids(t0 + timedelta(minutes=4), 100),
                                    t0 + timedelta(minutes=4))  # fmt: skip
    closed = t0 + timedelta(minutes=5)
    sent = await n.dispatcher.send(await n.outbox.ready_ids(closed, 100), closed)

    assert (first["delivered"], second["delivered"], early) == (0, 0, {})
    assert sent["delivered"] == 1
    (message,) = await messages(async_redis, p)
    assert message.message_id == unlocked.decision_id
    assert message.decision_ids == (unlocked.decision_id, flag.decision_id)
    assert message.title == "Updates on your rehab programme"
    assert "Your physio will be in touch" in message.body
    assert sorted((r.decision_id, r.message_id) for r in await receipts(async_redis, p)) == sorted(
        [(unlocked.decision_id, unlocked.decision_id), (flag.decision_id, unlocked.decision_id)]
    )


async def test_a_decision_after_its_message_was_sent_starts_a_new_one(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    n = notifier(async_redis, p, coalesce_window_s=300)
    t0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    first, later = (
        a_decision(client, at=t0),
        flagged(client, occurred_at=t0 + timedelta(minutes=1)),
    )

    await process_decisions([entry(first)], n, now=t0)
    await n.dispatcher.send([str(first.decision_id)], t0 + timedelta(minutes=5))
    await process_decisions([entry(later, 2)], n, now=t0 + timedelta(minutes=6))

    assert [m.decision_ids for m in await messages(async_redis, p)] == [
        (first.decision_id,),
        (later.decision_id,),
    ]


async def test_one_batch_with_many_clients_is_one_message_each(async_redis: aredis.Redis) -> None:
    p = a_partition()
    decisions = [a_decision(unique_client()) for _ in range(50)]
    n = notifier(async_redis, p)

    fates = await process_decisions([entry(d, i) for i, d in enumerate(decisions)], n)
    again = await process_decisions([entry(d, i) for i, d in enumerate(decisions)], n)

    assert (fates["delivered"], again["duplicate"]) == (50, 50)
    assert sorted(str(m.message_id) for m in await messages(async_redis, p)) == sorted(
        str(d.decision_id) for d in decisions
    )


async def test_a_batch_larger_than_one_script_call_is_taken_and_sent_once_each(
    async_redis: aredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "STEP_CHUNK", 2)
    p = a_partition()
    decisions = [a_decision(unique_client()) for _ in range(5)]
    n = notifier(async_redis, p)

    fates = await process_decisions([entry(d, i) for i, d in enumerate(decisions)], n)
    again = await process_decisions([entry(d, i) for i, d in enumerate(decisions)], n)

    assert (fates["delivered"], again["duplicate"], again["delivered"]) == (5, 5, 0)
    assert [m.message_id for m in await messages(async_redis, p)] == [
        d.decision_id for d in decisions
    ]
    assert len(await receipts(async_redis, p)) == 5


async def test_a_batchs_new_messages_are_known_exactly_as_stored(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    n = notifier(async_redis, p, coalesce_window_s=300)
    decisions = [a_decision(client, at=T0), flagged(client, occurred_at=T0 + timedelta(minutes=1)),
                 a_decision(client, at=T0 + timedelta(minutes=9))]  # fmt: skip
    placements = place([(str(d.decision_id), d.occurred_at) for d in decisions], None, None, T0,
                       n.coalesce_window)  # fmt: skip

    scheduled = await n.outbox.schedule(
        [Entry(d, d.model_dump_json(), at) for d, at in zip(decisions, placements, strict=True)]
    )

    assert [f for f, _ in scheduled.fates] == ["created", "joined", "created"]
    assert list(scheduled.created.values()) == await n.outbox.read(list(scheduled.created))
    assert [q.decisions for q in scheduled.created.values()] == [
        (decisions[0], decisions[1]),
        (decisions[2],),
    ]


async def test_a_message_joined_after_the_batch_built_it_is_not_sent_stale(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    mine, theirs = notifier(async_redis, p), notifier(async_redis, p)
    now = T0 + timedelta(minutes=10)  # the window has closed: due at once
    first, joining = a_decision(client, at=T0), flagged(client, occurred_at=T0)

    scheduled = await mine.outbox.schedule([await _entry(mine, first, now)])
    await theirs.outbox.schedule([await _entry(theirs, joining, now)])  # another notifier
    stale = await mine.dispatcher.send(list(scheduled.created), now, known=scheduled.created)
    sent = await mine.dispatcher.send(await mine.outbox.ready_ids(now, 100), now)

    assert (stale, sent) == ({"changed": 1}, {"delivered": 1})
    assert [m.decision_ids for m in await messages(async_redis, p)] == [
        (first.decision_id, joining.decision_id)
    ]


async def test_a_message_another_notifier_joins_mid_batch_is_read_back(
    async_redis: aredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "STEP_CHUNK", 1)  # one script call per decision
    p, client = a_partition(), unique_client()
    mine, theirs = notifier(async_redis, p), notifier(async_redis, p)
    now = T0 + timedelta(minutes=10)
    first, second = a_decision(client, at=T0), a_decision(client, at=T0 + timedelta(minutes=2))
    joining = flagged(client, occurred_at=T0 + timedelta(minutes=1))
    step, calls = mine.outbox._schedule, []

    async def then_another_notifier(**kwargs: Any) -> Any:
        result = await step(**kwargs)
        if not calls:  # between this batch's first and second step
            await theirs.outbox.schedule([await _entry(theirs, joining, now)])
        calls.append(result)
        return result

    monkeypatch.setattr(mine.outbox, "_schedule", then_another_notifier)
    fates = await process_decisions([entry(first, 1), entry(second, 2)], mine, now=now)

    assert (len(calls), fates["scheduled"], fates["delivered"]) == (2, 2, 1)
    assert [m.decision_ids for m in await messages(async_redis, p)] == [
        (first.decision_id, joining.decision_id, second.decision_id)
    ]


async def _entry(n: Notifier, decision: ProgressionEvaluated, now: datetime) -> Entry:
    """`decision` placed as process_decisions places it (no contact, no quiet hours)."""
    client = decision.client_id
    open_message = (await n.outbox.open_messages([client]))[client]
    [placement] = place([(str(decision.decision_id), decision.occurred_at)], open_message, None,
                        now, n.coalesce_window)  # fmt: skip
    return Entry(decision, decision.model_dump_json(), placement)
