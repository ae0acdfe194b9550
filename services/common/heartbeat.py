"""A liveness beat each service writes while all of its subscribers run.

Healthchecks read it instead of XINFO CONSUMERS: Redis 7.0 does not list a
consumer until a read returned entries, so an idle, healthy service would look
dead there. A beat is a field of one hash per service (consumer name -> unix
time in ms), so checking it costs one HGETALL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from rehabgate.schemas.streams import PREFIX

from .connections import RedisClient

INTERVAL_S = 2.0


def heartbeat_key(service: str) -> str:
    return f"{PREFIX}:heartbeat:{service}"


class Heartbeat:
    def __init__(
        self, redis: RedisClient, service: str, consumer: str, alive: Callable[[], bool]
    ) -> None:
        self._redis, self._key, self._consumer, self._alive = (
            redis, heartbeat_key(service), consumer, alive,
        )  # fmt: skip
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            if self._alive():
                await self._redis.hset(self._key, self._consumer, int(time.time() * 1000))
            await asyncio.sleep(INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.hdel(self._key, self._consumer)
