"""The notifier service: FastStream wiring only.

Per partition, a main subscriber reads decisions in batches and a claimer
recovers batches another notifier left pending, dead-lettering a decision once
it has been delivered `max_deliveries` times. Each batch goes into the outbox
(exactly once per decision) and what is due on the client-messages stream is
sent at once; the outbox loop sends the rest (quiet hours, coalescing windows,
e-mail and webhooks). See the package docstring for the delivery guarantees.
Health and metrics routes (`common/ops_routes.py`) are served on
`http_host:notifier_http_port`, as an ASGI app under uvicorn.
Run with: faststream run --factory rehabgate.services.notifier.app:create_app
"""

from __future__ import annotations

import logging
from datetime import timedelta

import structlog
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage
from opentelemetry import trace

from rehabgate.schemas.streams import (
    NOTIFIER_GROUP,
    evaluated_dead_letter_stream,
    evaluated_stream,
)
from rehabgate.services.common import connections
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.consuming import (
    RawEntry,
    dead_letter_exhausted,
    raw_batch_parser,
    raw_entries,
)
from rehabgate.services.common.http_serving import ServiceAsgi
from rehabgate.services.common.lifecycle import service_app
from rehabgate.services.common.logging import configure_logging
from rehabgate.services.common.metrics import NotifierMetrics
from rehabgate.services.common.ops_routes import operations
from rehabgate.services.common.settings import NotifierSettings, settings_or_exit
from rehabgate.services.common.tracing import traced

from .channels.base import ChannelName, ExternalChannel
from .channels.email import EmailChannel
from .channels.retry import RetryPolicy
from .channels.webhook import WebhookChannel
from .loop import OutboxLoop
from .outbox.store import Outbox
from .process import Notifier, process_decisions
from .rendering import Renderer
from .sending import Dispatcher

#: The dead-letter reason of process.py's unreadable decisions (its words before ':').
UNREADABLE = "unreadable decision"


def build_notifier(
    redis: RedisClient,
    partition: int,
    settings: NotifierSettings,
    renderer: Renderer | None = None,
    external: dict[ChannelName, ExternalChannel] | None = None,
    log: structlog.typing.FilteringBoundLogger | None = None,
    metrics: NotifierMetrics | None = None,
    tracer: trace.Tracer | None = None,
) -> Notifier:
    """One partition's notifier from settings (shared by the app and the tests).
    `metrics`: where deliveries are counted (default: a registry nobody scrapes);
    `tracer`: makes a span per message sent (default: none)."""
    outbox = Outbox(redis, partition)
    dispatcher = Dispatcher(
        outbox,
        renderer or Renderer(settings.template_dir, settings.default_locale),
        external if external is not None else external_channels(settings),
        RetryPolicy(settings.delivery_attempts, settings.delivery_deadline_s,
                    settings.delivery_backoff_s, settings.delivery_backoff_max_s),
        held_digest=settings.held_digest,
        log=log or structlog.get_logger("rehabgate.notifier"),
        count_delivery=(metrics or NotifierMetrics()).delivered,
        tracer=tracer,
    )  # fmt: skip
    return Notifier(redis, outbox, dispatcher, timedelta(seconds=settings.coalesce_window_s),
                    settings.held_digest)  # fmt: skip


def external_channels(settings: NotifierSettings) -> dict[ChannelName, ExternalChannel]:
    """The channels outside Redis that the settings configure."""
    channels: dict[ChannelName, ExternalChannel] = {}
    if (email := EmailChannel.from_settings(settings)) is not None:
        channels["email"] = email
    if settings.webhooks:
        channels["webhook"] = WebhookChannel(settings.webhooks, settings.webhook_timeout_s)
    return channels


def create_app(settings: NotifierSettings | None = None) -> ServiceAsgi:
    settings = settings or settings_or_exit(NotifierSettings)
    configure_logging(settings.log_json, settings.log_level)
    log = structlog.get_logger("rehabgate.notifier")
    if not settings.redis_url:
        raise SystemExit("notifier: set REDIS_URL (or use `rehabgate up`)")
    broker = connections.broker(
        settings, logger=log, log_level=logging.DEBUG, parser=raw_batch_parser,
        graceful_timeout=settings.shutdown_grace_s,
    )  # fmt: skip
    redis = connections.redis_client(settings)
    renderer = Renderer(settings.template_dir, settings.default_locale)
    external = external_channels(settings)
    metrics = NotifierMetrics()
    tracing = traced(broker, "notifier", settings)
    notifiers = [build_notifier(redis, p, settings, renderer, external, log, metrics,
                                tracing.tracer)
                 for p in range(settings.partitions)]  # fmt: skip
    loop = OutboxLoop(notifiers, settings.outbox_poll_s, settings.batch_size, log)

    for notifier in notifiers:
        _subscribe(broker, redis, settings, notifier, loop, log, metrics)

    groups = [(evaluated_stream(p), NOTIFIER_GROUP) for p in range(settings.partitions)]
    app = service_app("notifier", broker, redis, settings, groups, log)
    app.after_shutdown(tracing.flush)

    @app.after_startup
    async def start_outbox_loop() -> None:
        loop.start()
        log.info("notifier_channels", channels=["stream", *sorted(external)])

    @app.on_shutdown
    async def stop_outbox_loop() -> None:
        await loop.stop(grace_s=settings.shutdown_grace_s)
        webhook = external.get("webhook")
        if isinstance(webhook, WebhookChannel):
            await webhook.close()

    routes = operations(app, broker, redis, groups, metrics, settings.ready_timeout_s)
    return ServiceAsgi.serving(app, routes, settings.http_host, settings.notifier_http_port, log)


def _subscribe(
    broker: RedisBroker,
    redis: RedisClient,
    settings: NotifierSettings,
    notifier: Notifier,
    loop: OutboxLoop,
    log: structlog.typing.FilteringBoundLogger,
    metrics: NotifierMetrics,
) -> None:
    partition = notifier.partition
    stream = evaluated_stream(partition)

    async def handle(entries: list[RawEntry], reclaimed: bool) -> None:
        if not entries:
            return
        fates = await process_decisions(entries, notifier, send_external=False)
        metrics.dead_lettered([UNREADABLE] * fates["dead_lettered"])
        if fates["left_for_loop"]:
            loop.wake()  # e-mail and webhooks are sent by the loop, off this handler
        log.info("decisions_handled", stream=stream, reclaimed=reclaimed, **fates)

    @broker.subscriber(
        stream=StreamSub(stream, group=NOTIFIER_GROUP, consumer=settings.consumer,
                         batch=True, max_records=settings.batch_size),
    )  # fmt: skip
    async def on_decisions(msg: RedisBatchStreamMessage) -> None:
        """progression.evaluated decisions: unlocked / regressed / flagged / completed
        (and held, with the held digest) become plain-language client messages, at
        most one per decision, on the client's channel (default: the client-messages
        stream) with a message.delivered or message.failed receipt per decision;
        flags also alert the physio-alerts stream. A decision's `traceparent`
        field is continued by the span of its message, whose entry carries it."""
        await handle(raw_entries(msg), reclaimed=False)

    @broker.subscriber(
        stream=StreamSub(stream, group=NOTIFIER_GROUP, consumer=f"{settings.consumer}-claimer",
                         batch=True, min_idle_time=settings.claim_idle_ms),
    )  # fmt: skip
    async def on_decisions_reclaimed(msg: RedisBatchStreamMessage) -> None:
        """Decisions left pending by a crashed notifier or a failed batch, taken in
        idempotently; dead-lettered after `max_deliveries` attempts."""
        rest = await dead_letter_exhausted(
            redis, raw_entries(msg), stream=stream, group=NOTIFIER_GROUP,
            dead_letter_stream=evaluated_dead_letter_stream(partition),
            max_deliveries=settings.max_deliveries, log=log, metrics=metrics,
        )  # fmt: skip
        await handle(rest, reclaimed=True)
