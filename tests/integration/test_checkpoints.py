"""Checkpoints on a real server (issue 14, item 4): the commit step keeps the state
before each new day with its audit position, drops the ones a late event makes
stale, keeps the same ones as client_store.checkpoints_kept, and a late event is
decided from the one before it."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as aredis

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.services.gatekeeper.client_store import RecordedHistory, checkpoints_kept
from rehabgate.services.gatekeeper.domain.history import day_number
from rehabgate.services.gatekeeper.process import Entry, process_batch
from rehabgate.services.gatekeeper.store import RedisClientStore
from tests.unit.builders import an_enrolment, at
from tests.unit.test_event_time import NOW, PROTOCOLS, healthy_day, model, transitions

pytestmark = pytest.mark.integration


class CountingStore(RedisClientStore):
    """The real adapter, noting what each history read returned."""

    reads: list[RecordedHistory]

    async def load_history(
        self, client_id: str, before: datetime | None = None
    ) -> RecordedHistory:
        history = await super().load_history(client_id, before)
        self.reads.append(history)
        return history


async def apply(store: RedisClientStore, events: list[Any]) -> None:
    for i in range(0, len(events), 20):
        batch = [Entry(f"{i + n + 1}-0", {b"event": e.model_dump_json().encode()})
                 for n, e in enumerate(events[i : i + 20])]  # fmt: skip
        await process_batch(batch, store, PROTOCOLS, now=NOW)


async def stored_days(r: aredis.Redis, store: RedisClientStore, client: str) -> set[int]:
    return {int(d) for d in await r.hkeys(store.keys(client).checkpoints)}


async def test_checkpoints_are_kept_by_the_documented_rule_and_a_late_event_uses_one(
    async_redis: aredis.Redis,
) -> None:
    client = f"cp-{uuid4().hex[:10]}"
    # The unit tests' history (whose in-order model is known), for a fresh client.
    original = [e for day in range(120) for e in healthy_day(day)]
    late_original = healthy_day(115)[0].model_copy(update={"occurred_at": at(days=115, hours=12)})
    own = {"client_id": client}
    store = CountingStore(async_redis, partitions=1)
    store.reads = []
    await apply(store, [an_enrolment(**own), *(e.model_copy(update=own) for e in original)])

    days = await stored_days(async_redis, store, client)
    every_day = {day_number(at(days=d)) for d in range(1, 121)}
    assert days == checkpoints_kept(every_day, max(every_day))

    await apply(store, [late_original.model_copy(update=own)])

    [read] = store.reads
    assert read.base is not None  # from a checkpoint, not the enrolment
    assert len(read.events) == 11  # days 115 to 120: five sessions, six check-ins
    assert max(await stored_days(async_redis, store, client)) <= day_number(at(days=115))
    recorded = {}
    for _, fields in await async_redis.xrange(store.keys(client).evaluated):
        decision = ProgressionEvaluated.model_validate_json(fields[b"event"])
        if decision.client_id == client:
            recorded[str(decision.cause_event_id)] = decision
    events = [*original, late_original]
    assert transitions(recorded, events) == transitions(model(events), events)
