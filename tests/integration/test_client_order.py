"""ClientOrder on a real server: one client's entries are applied in stream order
across consumers. An earlier entry of a batch's client pending at a consumer that is
gone is taken over and comes first; one a live consumer is handling makes the client
wait; other clients never wait for it."""

from __future__ import annotations

import json
import uuid

import pytest
import redis.asyncio as aredis

from rehabgate.services.common.consuming import PARKED, ClientOrder, RawEntry, ensure_group
from rehabgate.services.common.heartbeat import heartbeat_key, now_ms, started_key
from tests.events import session, unique_client

pytestmark = pytest.mark.integration


class Group:
    """A fresh stream and group, and a heartbeat service name of its own."""

    def __init__(self, redis: aredis.Redis) -> None:
        self.redis = redis
        tag = uuid.uuid4().hex[:8]
        self.stream, self.group, self.service = f"test:order:{tag}", "g", f"order-{tag}"

    async def add(self, client: str, day: int = 1) -> str:
        entry_id = await self.redis.xadd(self.stream, {"event": json.dumps(session(client, day))})
        return entry_id.decode()

    async def read(self, consumer: str, count: int) -> list[RawEntry]:
        reply = await self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count)
        return [(i.decode(), f) for i, f in reply[0][1]] if reply else []

    async def beat(self, consumer: str, started_ms: int | None = None) -> None:
        await self.redis.hset(heartbeat_key(self.service), consumer, now_ms())
        if started_ms is not None:
            await self.redis.hset(started_key(self.service), consumer, started_ms)

    def order(self, consumer: str) -> ClientOrder:
        return ClientOrder(
            self.redis, self.stream, self.group, service=self.service, consumer=consumer,
            dead_after_ms=10_000, claim_idle_ms=30_000,
        )  # fmt: skip

    async def owner(self, entry_id: str) -> str:
        rows = await self.redis.xpending_range(
            self.stream, self.group, min=entry_id, max=entry_id, count=1
        )
        return rows[0]["consumer"].decode() if rows else "(acknowledged)"

    async def close(self) -> None:
        await self.redis.delete(self.stream, heartbeat_key(self.service),
                                started_key(self.service))  # fmt: skip


@pytest.fixture
async def group(async_redis: aredis.Redis) -> Group:
    made = Group(async_redis)
    await ensure_group(async_redis, made.stream, made.group)
    yield made  # type: ignore[misc]
    await made.close()


def ids(entries: list[RawEntry]) -> list[str]:
    return [entry_id for entry_id, _ in entries]


async def test_a_gone_consumers_earlier_entry_is_taken_over_and_comes_first(
    group: Group,
) -> None:
    client = unique_client("order")
    first = await group.add(client)
    await group.read("crashed", 1)  # never beat: gone
    second = await group.add(client)
    batch = await group.read("survivor", 10)
    await group.beat("survivor")

    gate = await group.order("survivor").sort(batch)

    assert ids(gate.ready) == [first, second]
    assert ids(gate.taken) == [first]
    assert gate.waiting == []
    assert await group.owner(first) == "survivor"


async def test_an_earlier_entry_a_live_consumer_handles_makes_its_client_wait(
    group: Group,
) -> None:
    client, other = unique_client("order"), unique_client("order")
    first = await group.add(client)
    await group.read("busy", 1)
    await group.beat("busy")
    second, unrelated = await group.add(client), await group.add(other)
    batch = await group.read("survivor", 10)
    order = group.order("survivor")

    gate = await order.sort(batch)
    assert ids(gate.ready) == [unrelated]
    assert ids(gate.waiting) == [second]
    assert await group.owner(first) == "busy"

    await group.redis.xack(group.stream, group.group, first)
    gate = await order.sort(gate.waiting)
    assert ids(gate.ready) == [second]
    assert gate.waiting == []


async def test_an_entry_handed_to_an_earlier_process_of_the_same_name_is_taken(
    group: Group,
) -> None:
    client = unique_client("order")
    first = await group.add(client)
    await group.read("gk-1", 1)  # then gk-1 is SIGKILLed and restarted under its name
    await group.redis.xclaim(group.stream, group.group, "gk-1", 0, [first], idle=50)
    await group.beat("gk-1", started_ms=now_ms())
    second = await group.add(client)
    batch = await group.read("gk-2", 10)

    gate = await group.order("gk-2").sort(batch)

    assert ids(gate.ready) == [first, second]


async def test_the_sweep_takes_a_gone_consumers_entries_but_not_parked_ones(
    group: Group,
) -> None:
    lost = [await group.add(unique_client("order")) for _ in range(3)]
    await group.read("crashed", 3)
    parked = await group.add(unique_client("order"))
    await group.read("survivor", 1)
    order = group.order("survivor")
    await order.take([parked], park=True)

    assert ids(await order.orphans()) == lost
    assert await group.owner(parked) == PARKED
    for entry_id in lost:
        assert await group.owner(entry_id) == "survivor"


async def test_a_parked_entry_of_the_client_is_taken_before_its_later_one(group: Group) -> None:
    client = unique_client("order")
    first = await group.add(client)
    await group.read("somebody", 1)
    order = group.order("survivor")
    await order.take([first], park=True)
    second = await group.add(client)

    gate = await order.sort(await group.read("survivor", 10))

    assert ids(gate.ready) == [first, second]


async def test_a_restarted_process_takes_what_its_name_held_before_it_started(
    group: Group,
) -> None:
    held = [await group.add(unique_client("order")) for _ in range(2)]
    await group.read("gk-1", 2)  # then gk-1 is SIGKILLed
    await group.redis.xclaim(group.stream, group.group, "gk-1", 0, held, idle=50)
    restarted = group.order("gk-1")  # the new process, same name

    assert ids(await restarted.orphans()) == held


async def test_a_failed_batch_of_this_process_waits_for_the_claim_idle_time_in_the_sweep(
    group: Group,
) -> None:
    order = group.order("gk-1")
    await group.add(unique_client("order"))
    await group.read("gk-1", 1)  # handled here, and the batch failed

    assert await order.orphans() == []
