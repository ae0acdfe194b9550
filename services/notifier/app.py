"""The notifier service: FastStream wiring only.

Per partition, a main subscriber reads decisions in batches and a claimer
recovers batches another notifier left pending, dead-lettering a decision once
it has been delivered `max_deliveries` times. Delivery is idempotent on the
decision id, so a re-run never sends a second message.
Run with: faststream run --factory rehabgate.services.notifier.app:create_app
"""

from __future__ import annotations

import logging

import structlog
from faststream import FastStream
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage
from redis.asyncio import Redis

from rehabgate.schemas.streams import (
    NOTIFIER_GROUP,
    evaluated_dead_letter_stream,
    evaluated_stream,
)
from rehabgate.services.common.consuming import RawEntry, dead_letter_exhausted, raw_entries
from rehabgate.services.common.lifecycle import service_app
from rehabgate.services.common.logging import configure_logging
from rehabgate.services.common.settings import Settings

from .process import process_decisions
from .stream_channel import StreamChannel


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or Settings()
    configure_logging(settings.log_json, settings.log_level)
    log = structlog.get_logger("rehabgate.notifier")
    if not settings.redis_url:
        raise SystemExit("notifier: set REDIS_URL (or use `rehabgate up`)")
    broker = RedisBroker(settings.redis_url, logger=log, log_level=logging.DEBUG)
    redis = Redis.from_url(settings.redis_url)

    for partition in range(settings.partitions):
        _subscribe(broker, redis, settings, partition, log)

    groups = [(evaluated_stream(p), NOTIFIER_GROUP) for p in range(settings.partitions)]
    return service_app("notifier", broker, redis, settings, groups, log)


def _subscribe(
    broker: RedisBroker,
    redis: Redis,
    settings: Settings,
    partition: int,
    log: structlog.typing.FilteringBoundLogger,
) -> None:
    stream = evaluated_stream(partition)
    channel = StreamChannel(redis, partition)

    async def handle(entries: list[RawEntry], reclaimed: bool) -> None:
        if not entries:
            return
        fates = await process_decisions(entries, channel, redis)
        log.info("decisions_handled", stream=stream, reclaimed=reclaimed, **fates)

    @broker.subscriber(
        stream=StreamSub(stream, group=NOTIFIER_GROUP, consumer=settings.consumer,
                         batch=True, max_records=settings.batch_size),
    )  # fmt: skip
    async def on_decisions(msg: RedisBatchStreamMessage) -> None:
        """progression.evaluated decisions: unlocked / regressed / flagged / completed
        become one plain-language message each on the client-messages stream, with a
        message.delivered receipt; held decisions need no message."""
        await handle(raw_entries(msg), reclaimed=False)

    @broker.subscriber(
        stream=StreamSub(stream, group=NOTIFIER_GROUP, consumer=f"{settings.consumer}-claimer",
                         batch=True, min_idle_time=settings.claim_idle_ms),
    )  # fmt: skip
    async def on_decisions_reclaimed(msg: RedisBatchStreamMessage) -> None:
        """Decisions left pending by a crashed notifier or a failed batch, delivered
        idempotently; dead-lettered after `max_deliveries` attempts."""
        rest = await dead_letter_exhausted(
            redis, raw_entries(msg), stream=stream, group=NOTIFIER_GROUP,
            dead_letter_stream=evaluated_dead_letter_stream(partition),
            max_deliveries=settings.max_deliveries, log=log,
        )  # fmt: skip
        await handle(rest, reclaimed=True)
