"""The gatekeeper service: FastStream wiring only.

Two subscribers on each inbound stream share one consumer group: the main one
reads new entries in batches; the claimer takes over entries another consumer
left pending (it crashed, or the batch failed) and dead-letters an entry once it
has been delivered `max_deliveries` times, so nothing is retried forever. The
inbound streams are the shared `rehabgate:inbound` without clinics configured,
else one per clinic (tenancy.py), each pair set up by the same code.
It also serves the physios' read-only audit pages over HTTP (`audit/http.py`) and
the health and metrics routes (`common/ops_routes.py`) on `http_host:http_port`,
as an ASGI app under uvicorn.
Run with: faststream run --factory rehabgate.services.gatekeeper.app:create_app
"""

from __future__ import annotations

import logging
from dataclasses import replace

import structlog
from faststream.exceptions import NackMessage
from faststream.redis import StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage

from rehabgate.schemas.streams import GATEKEEPER_GROUP, INBOUND_DEAD_LETTER
from rehabgate.services.common import connections
from rehabgate.services.common.consuming import (
    dead_letter_exhausted,
    delivery_counts,
    raw_batch_parser,
    raw_entries,
)
from rehabgate.services.common.http_serving import ServiceAsgi
from rehabgate.services.common.lifecycle import service_app
from rehabgate.services.common.logging import configure_logging
from rehabgate.services.common.metrics import GatekeeperMetrics
from rehabgate.services.common.ops_routes import operations
from rehabgate.services.common.settings import Settings, settings_or_exit
from rehabgate.services.common.tracing import EventSpans, traced

from .audit.http import physio_routes
from .process import Entry, Report, process_batch
from .protocol_files import load_protocols
from .store import RedisClientStore
from .tenancy import Source, sources


def create_app(settings: Settings | None = None) -> ServiceAsgi:
    settings = settings or settings_or_exit()
    configure_logging(settings.log_json, settings.log_level)
    log = structlog.get_logger("rehabgate.gatekeeper")
    if not settings.redis_url:
        raise SystemExit("gatekeeper: set REDIS_URL (or use `rehabgate up`)")
    protocols = load_protocols(settings.protocol_dirs)
    broker = connections.broker(
        settings, logger=log, log_level=logging.DEBUG, parser=raw_batch_parser
    )
    redis = connections.redis_client(settings)
    store = RedisClientStore(redis, settings.partitions)
    metrics = GatekeeperMetrics()
    tracing = traced(broker, "gatekeeper", settings)

    async def apply(
        entries: list[Entry], source: Source, reclaimed: bool, deferrable: set[str]
    ) -> None:
        spans = EventSpans(
            tracing.tracer, "gatekeeper evaluate", [(e.entry_id, e.fields) for e in entries]
        )
        entries = [replace(e, trace=spans.fields(e.entry_id)) for e in entries]
        try:
            report = await process_batch(entries, store, protocols, source, deferrable=deferrable)
        except BaseException:
            spans.end({})  # the batch stays pending and is retried: no fates to record
            raise
        spans.end({i: _span_attributes(report, i) for i in spans.spans})
        reasons = {letter.entry_id: letter.reason for letter in report.dead_letters}
        metrics.handled(report.fates.values(), report.outcomes.values(), reasons.values())
        for entry in entries:
            _log_fate(log, entry.entry_id, report, reasons.get(entry.entry_id), reclaimed)
        deferred = {i for i, fate in report.fates.items() if fate == "deferred"}
        if deferred:
            # Ack the rest ourselves and leave the deferred entries pending: the
            # claimer retries them after claim_idle_ms, until max_deliveries.
            done = [e.entry_id for e in entries if e.entry_id not in deferred]
            if done:
                await redis.xack(source.stream, GATEKEEPER_GROUP, *done)
            raise NackMessage

    def subscribe(source: Source) -> None:
        @broker.subscriber(
            stream=StreamSub(
                source.stream, group=GATEKEEPER_GROUP, consumer=settings.consumer,
                batch=True, max_records=settings.batch_size,
            )
        )  # fmt: skip
        async def on_inbound(msg: RedisBatchStreamMessage) -> None:
            """Clinic events (client.enrolled, session.logged, checkin.logged,
            clinician.action, client.contact.updated, client.discharged), JSON in the
            entry field `event`; an optional W3C `traceparent` field continues the
            sender's trace. Each is applied once, recognised as a duplicate, or
            dead-lettered with a reason; decisions go to progression.evaluated, with
            the `traceparent` of the gatekeeper's span."""
            entries = [Entry(i, f) for i, f in raw_entries(msg)]
            await apply(entries, source, False, {e.entry_id for e in entries})

        @broker.subscriber(
            stream=StreamSub(
                source.stream, group=GATEKEEPER_GROUP, consumer=f"{settings.consumer}-claimer",
                batch=True, min_idle_time=settings.claim_idle_ms,
            )
        )  # fmt: skip
        async def on_inbound_reclaimed(msg: RedisBatchStreamMessage) -> None:
            """Entries left pending by a crashed consumer or a failed batch, re-applied
            idempotently; dead-lettered after `max_deliveries` attempts."""
            rest = await dead_letter_exhausted(
                redis, raw_entries(msg), stream=source.stream, group=GATEKEEPER_GROUP,
                dead_letter_stream=INBOUND_DEAD_LETTER, max_deliveries=settings.max_deliveries,
                log=log, metrics=metrics,
            )  # fmt: skip
            counts = await delivery_counts(
                redis, source.stream, GATEKEEPER_GROUP, [i for i, _ in rest]
            )
            retry = {i for i, _ in rest if counts[i] < settings.max_deliveries}
            await apply([Entry(i, f) for i, f in rest], source, True, retry)

    inbound = sources(settings)
    for source in inbound:
        subscribe(source)
    log.info("protocols_loaded", protocols=sorted(protocols))
    groups = [(source.stream, GATEKEEPER_GROUP) for source in inbound]
    app = service_app("gatekeeper", broker, redis, settings, groups, log)
    app.after_shutdown(tracing.flush)
    routes = physio_routes(redis, settings, log) + operations(
        app, broker, redis, groups, metrics, settings.ready_timeout_s
    )
    return ServiceAsgi.serving(app, routes, settings.http_host, settings.http_port, log)


def _log_fate(
    log: structlog.typing.FilteringBoundLogger,
    entry_id: str,
    report: Report,
    reason: str | None,
    reclaimed: bool,
) -> None:
    """One line per entry: ids and outcome only. A dead-letter reason is cut at its
    first colon ("schema violation", "malformed JSON"): the details stay in Redis."""
    event = report.events.get(entry_id)
    ids = {}
    if event is not None:
        ids = {
            "event_id": str(event.event_id),
            "correlation_id": event.correlation_id or str(event.event_id),
            "event_type": event.event_type,
            "client_id": event.client_id,
            "clinic_id": event.clinic_id,
        }
    fate = report.fates.get(entry_id, "dead_lettered")
    log.info(
        "event_" + fate,
        entry_id=entry_id,
        outcome=report.outcomes.get(entry_id),
        reason=reason.split(":")[0] if reason else None,
        reclaimed=reclaimed,
        **ids,
    )


def _span_attributes(report: Report, entry_id: str) -> dict[str, str]:
    """What a span records of its event: ids, type, fate and outcome, nothing clinical."""
    attributes: dict[str, str] = {"rehabgate.fate": report.fates.get(entry_id, "dead_lettered")}
    if (outcome := report.outcomes.get(entry_id)) is not None:
        attributes["rehabgate.outcome"] = outcome
    if (event := report.events.get(entry_id)) is not None:
        attributes |= {"rehabgate.event_id": str(event.event_id),
                       "rehabgate.event_type": event.event_type,
                       "rehabgate.client_id": event.client_id}  # fmt: skip
    return attributes
