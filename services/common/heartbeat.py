"""A liveness beat each service writes while all of its subscribers run.

Healthchecks read it instead of XINFO CONSUMERS: Redis 7.0 does not list a
consumer until a read returned entries, so an idle, healthy service would look
dead there. A beat is a field of one hash per service (consumer name -> unix
time in ms), so checking it costs one HGETALL. A second hash records when each
consumer's current process started, so an entry it was handed before that (by a
process of the same name that died) is known to be nobody's work any more.

`Liveness` is what the gatekeepers read to tell a consumer that is working from
one that is gone (its beat stale or removed, or its entries older than its
current process): the ordering of common/consuming.py takes over a gone
consumer's pending entries at once instead of waiting for the claim idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from rehabgate.schemas.streams import PREFIX

from .connections import RedisClient

INTERVAL_S = 2.0


def heartbeat_key(service: str) -> str:
    return f"{PREFIX}:heartbeat:{service}"


def started_key(service: str) -> str:
    """Hash: consumer name -> unix time in ms its current process started."""
    return f"{PREFIX}:heartbeat:{service}:started"


def now_ms() -> int:
    return int(time.time() * 1000)


class Heartbeat:
    def __init__(
        self, redis: RedisClient, service: str, consumer: str, alive: Callable[[], bool]
    ) -> None:
        self._redis, self._key, self._consumer, self._alive = (
            redis, heartbeat_key(service), consumer, alive,
        )  # fmt: skip
        self._started = started_key(service)
        self._since = now_ms()
        self._task: asyncio.Task[None] | None = None

    async def announce(self) -> None:
        """Record that this process is the consumer's current one, before it reads
        anything: what the name held before now is a dead process's work."""
        await self._redis.hset(self._started, self._consumer, self._since)

    async def _beat(self) -> None:
        while True:
            if self._alive():
                await self._redis.hset(self._key, self._consumer, now_ms())
            await asyncio.sleep(INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def pause(self) -> None:
        """Stop beating (the process is stopping), keeping the last beat."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def stop(self) -> None:
        """Stop beating and remove the beat: the consumer is gone."""
        await self.pause()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hdel(self._key, self._consumer)
        pipe.hdel(self._started, self._consumer)
        await pipe.execute()


@dataclass(frozen=True)
class Liveness:
    """The beats of one service's consumers as read at `at_ms` (this host's clock;
    the hosts' clocks are assumed to agree within a few seconds, NTP)."""

    beats: dict[str, int]
    started: dict[str, int]
    at_ms: int

    @classmethod
    async def read(cls, redis: RedisClient, service: str) -> Liveness:
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(heartbeat_key(service))
        pipe.hgetall(started_key(service))
        beats, started = cast(list[dict[bytes, bytes]], await pipe.execute())
        return cls(
            {k.decode(): int(v) for k, v in beats.items()},
            {k.decode(): int(v) for k, v in started.items()},
            now_ms(),
        )

    def gone(self, consumer: str, idle_ms: int, dead_after_ms: int) -> bool:
        """Whether an entry `consumer` was handed `idle_ms` ago is nobody's work: the
        consumer's beat is missing or older than `dead_after_ms`, or the entry was
        handed to an earlier process of the same name."""
        beat = self.beats.get(consumer)
        if beat is None or self.at_ms - beat > dead_after_ms:
            return True
        started = self.started.get(consumer)
        return started is not None and self.at_ms - idle_ms < started
