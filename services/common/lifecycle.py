"""The lifecycle both services share: consumer groups before subscribers start,
a heartbeat while they run, and the Redis client closed at the end."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from faststream import FastStream
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from .consuming import ensure_group
from .heartbeat import Heartbeat


def service_app(
    service: str,
    broker: RedisBroker,
    redis: Redis,
    consumer: str,
    groups: Sequence[tuple[str, str]],
    log: structlog.typing.FilteringBoundLogger,
) -> FastStream:
    """`groups`: (stream, group) pairs to create at id 0 before consuming."""
    app = FastStream(broker, logger=log)
    heartbeat = Heartbeat(
        redis, service, consumer, alive=lambda: all(s.running for s in broker.subscribers)
    )

    @app.on_startup
    async def create_groups() -> None:
        for stream, group in groups:
            await ensure_group(redis, stream, group)
        log.info(f"{service}_starting", consumer=consumer)

    @app.after_startup
    async def start_heartbeat() -> None:
        heartbeat.start()

    @app.on_shutdown
    async def stop_heartbeat() -> None:
        await heartbeat.stop()

    @app.after_shutdown
    async def close_redis() -> None:
        await redis.aclose()

    return app
