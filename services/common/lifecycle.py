"""The lifecycle both services share: consumer groups (and pruning of dead
consumers) before subscribers start, a heartbeat and periodic trimming while
they run, and the Redis client closed at the end.

Shutdown is bounded: FastStream waits `shutdown_grace_s` for the batches under
way (the services build their brokers with it as `graceful_timeout`), and a
watchdog ends the process 5 s after that if anything still hangs; whatever was
not committed stays pending and is taken over elsewhere.

A lost consumer group (FLUSHALL, a restore, XGROUP DESTROY) makes FastStream
0.7.8 stop that subscriber for good and exit the app. The heartbeat stops at
once (not every subscriber runs), the shutdown logs `consumer_group_lost` and
the process exits non-zero, so a supervisor restarts it; the restart recreates
the group at id 0 and re-reads what is left, as recognised duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import threading
from collections.abc import Sequence

import structlog
from faststream import FastStream
from faststream.redis import RedisBroker

from .connections import RedisClient
from .consuming import ensure_group, prune_idle_consumers
from .heartbeat import Heartbeat
from .retention import trim_stream
from .settings import CommonSettings

#: After the shutdown grace, this long for the rest of the shutdown (closing
#: connections, flushing traces) before the process is ended regardless.
FORCE_EXIT_AFTER_GRACE_S = 5.0


class ConsumerGroupLost(RuntimeError):
    """A subscriber stopped because its consumer group vanished; a restart recreates it."""


def service_app(
    service: str,
    broker: RedisBroker,
    redis: RedisClient,
    settings: CommonSettings,
    groups: Sequence[tuple[str, str]],
    log: structlog.typing.FilteringBoundLogger,
) -> FastStream:
    """`groups`: the (stream, group) pairs the service consumes; each group is
    created at id 0 before consuming, and each stream is trimmed periodically."""
    app = FastStream(broker, logger=log)
    consumer = settings.consumer
    heartbeat = Heartbeat(
        redis, service, consumer, alive=lambda: all(s.running for s in broker.subscribers)
    )
    tasks: list[asyncio.Task[None]] = []
    started = False
    lost: list[str] = []
    streams = list(dict.fromkeys(stream for stream, _ in groups))

    async def keep_trimming() -> None:
        """Trim each consumed stream every `trim_interval_s`; a failed round is
        logged and retried on the next one (trimming is never urgent)."""
        while True:
            for stream in streams:
                try:
                    trimmed = await trim_stream(redis, stream, settings.retention_s)
                except Exception as exc:  # never let maintenance stop for good
                    log.warning("trim_failed", stream=stream, error=str(exc))
                    continue
                if trimmed.removed:
                    log.info("stream_trimmed", stream=stream, removed=trimmed.removed,
                             below=trimmed.below)  # fmt: skip
            await asyncio.sleep(settings.trim_interval_s)

    @app.on_startup
    async def create_groups() -> None:
        await heartbeat.announce()
        for stream, group in groups:
            await ensure_group(redis, stream, group)
            if pruned := await prune_idle_consumers(redis, stream, group):
                log.info("consumers_pruned", stream=stream, group=group, consumers=pruned)
        log.info(f"{service}_starting", consumer=consumer)

    @app.after_startup
    async def start_background() -> None:
        nonlocal started
        started = True
        # What start-up built lives as long as the process: kept out of the cyclic
        # collector, whose full collections would otherwise rescan it (~100k
        # objects, 50-100 ms) every few seconds under load: a latency p99 of both
        # services, measured on the notifier.
        gc.freeze()
        heartbeat.start()
        tasks.append(asyncio.create_task(keep_trimming()))

    def force_exit_later() -> None:
        """Shutdown is bounded: a batch or a Redis call that hangs past the grace
        (a cancelled call can, on Python 3.11) must not keep the process alive
        (a supervisor would SIGKILL it anyway). What it held stays pending."""

        def watchdog() -> None:
            if not done.wait(settings.shutdown_grace_s + FORCE_EXIT_AFTER_GRACE_S):
                log.error("shutdown_forced", after_s=settings.shutdown_grace_s
                          + FORCE_EXIT_AFTER_GRACE_S)  # fmt: skip
                os._exit(1)

        # Not inside a test process that runs the app in-process: a failed test's
        # shutdown must fail that test, not end the whole run.
        if "pytest" not in sys.modules:
            threading.Thread(target=watchdog, name="shutdown-watchdog", daemon=True).start()

    done = threading.Event()

    @app.on_shutdown
    async def stop_background() -> None:
        force_exit_later()
        # Subscribers stop after these hooks, so one already stopped was stopped
        # by FastStream: its group is gone (the only terminal error we can hit).
        for subscriber in broker.subscribers:
            if started and not subscriber.running:
                sub = subscriber.stream_sub  # type: ignore[attr-defined]
                lost.append(sub.name)
                log.error("consumer_group_lost", stream=sub.name, group=sub.group,
                          consumer=sub.consumer)  # fmt: skip
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await heartbeat.pause()

    @app.after_shutdown
    async def close_redis() -> None:
        # The beat goes only now, once the subscribers stopped: the other processes
        # take over what this one still holds as soon as it is removed.
        try:
            with contextlib.suppress(Exception):
                await heartbeat.stop()
            await redis.aclose()
        finally:
            done.set()
        if lost:
            raise ConsumerGroupLost(f"consumer group lost on {sorted(set(lost))}; restart")

    return app
