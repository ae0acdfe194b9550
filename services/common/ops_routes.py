"""The operators' HTTP routes both services serve beside their consumers.

| path | answers |
|---|---|
| `/health/live` | 200 while the process runs its event loop (restart it when this fails) |
| `/health/ready` | 200 when start-up has finished, Redis answers PING within `ready_timeout_s` and every subscriber runs; else 503 and `{"ready": false, "failed": [...]}` naming each failed check |
| `/metrics` | Prometheus text format (metrics.py) |

Readiness is what a load balancer or an orchestrator should watch: a service whose
consumer group was lost has a stopped subscriber and is about to exit, one whose
Redis is away cannot make progress; both are alive but not ready. The checks name
what failed and never carry a Redis error text (it can quote a URL with a password).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from faststream import FastStream
from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from .connections import RedisClient
from .metrics import ServiceMetrics

NO_STORE = {"Cache-Control": "no-store"}


class Readiness:
    """The readiness checks; start-up and shutdown move `phase` through the app's hooks."""

    def __init__(self, broker: RedisBroker, redis: RedisClient, timeout_s: float) -> None:
        self.broker, self.redis, self.timeout_s = broker, redis, timeout_s
        self.phase = "starting"

    async def failures(self) -> list[str]:
        """What keeps the service from being ready; empty when it is."""
        failed = []
        if self.phase == "starting":
            failed.append("start-up not finished")
        elif self.phase == "stopping":
            failed.append("shutting down")
        try:
            await asyncio.wait_for(self.redis.ping(), self.timeout_s)
        except (TimeoutError, RedisError, OSError):
            failed.append("redis unreachable")
        for subscriber in self.broker.subscribers:
            if not subscriber.running:
                sub = subscriber.stream_sub  # type: ignore[attr-defined]
                failed.append(f"subscriber stopped: {sub.name} ({sub.consumer})")
        return failed


def operations(
    app: FastStream,
    broker: RedisBroker,
    redis: RedisClient,
    groups: Sequence[tuple[str, str]],
    metrics: ServiceMetrics,
    ready_timeout_s: float,
) -> list[tuple[str, ASGIApp]]:
    """Wire the operator's view of one service: FastStream's metrics middleware onto
    `broker`, the readiness phase onto `app`'s hooks, and the routes to serve.
    `groups`: the (stream, group) pairs the service consumes."""
    broker.add_middleware(metrics.middleware)
    readiness = Readiness(broker, redis, ready_timeout_s)

    @app.after_startup
    async def ready_for_work() -> None:
        readiness.phase = "running"

    @app.on_shutdown
    async def draining() -> None:
        readiness.phase = "stopping"

    @get(include_in_schema=False)
    async def live(scope: Scope) -> AsgiResponse:
        """Answering at all is the proof: the event loop runs."""
        return _json({"live": True}, 200)

    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        if failed := await readiness.failures():
            return _json({"ready": False, "failed": failed}, 503)
        return _json({"ready": True}, 200)

    @get(include_in_schema=False)
    async def metrics_text(scope: Scope) -> AsgiResponse:
        body = await metrics.render(redis, groups, ready_timeout_s)
        return AsgiResponse(body, 200, {**NO_STORE, "Content-Type": CONTENT_TYPE_LATEST})

    return [("/health/live", live), ("/health/ready", ready), ("/metrics", metrics_text)]


def _json(data: dict[str, Any], status: int) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(data).encode(), status, {**NO_STORE, "Content-Type": "application/json"}
    )
