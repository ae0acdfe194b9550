"""The gatekeeper service: FastStream wiring only.

Two subscribers on each inbound stream share one consumer group: the main one
reads new entries in batches; the claimer takes over entries another consumer
left pending (it crashed, or the batch failed) and dead-letters an entry once it
has been delivered `max_deliveries` times, so nothing is retried forever. Every
batch passes `ClientOrder` (common/consuming.py), so one client's entries are
applied in stream order across gatekeepers: the earlier entries of its clients
that a gone gatekeeper left pending are taken over and applied first, and those
another live gatekeeper is handling are waited for. A sweep takes over a gone
gatekeeper's entries (heartbeat stale for `takeover_after_ms`) even when no later
event of their clients arrives. The
inbound streams are the shared `rehabgate:inbound` without clinics configured,
else one per clinic (tenancy.py), each pair set up by the same code.
It also serves the physios' web app over HTTP (`physio_web/`, a Starlette app mounted at /physio) and
the health and metrics routes (`common/ops_routes.py`) on `http_host:http_port`,
as an ASGI app under uvicorn.
Run with: faststream run --factory rehabgate.services.gatekeeper.app:create_app
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import timedelta

import structlog
from faststream.exceptions import NackMessage
from faststream.redis import StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage

from rehabgate.schemas.streams import GATEKEEPER_GROUP, INBOUND_DEAD_LETTER
from rehabgate.services.common import connections
from rehabgate.services.common.consuming import (
    CLAIMER_SUFFIX,
    ClientOrder,
    RawEntry,
    dead_letter_exhausted,
    delivery_counts,
    raw_batch_parser,
    raw_entries,
)
from rehabgate.services.common.http_serving import ServiceAsgi
from rehabgate.services.common.lifecycle import service_app
from rehabgate.services.common.logging import configure_logging
from rehabgate.services.common.memory import LARGE_BATCH_BYTES, release_soon
from rehabgate.services.common.metrics import GatekeeperMetrics
from rehabgate.services.common.ops_routes import operations
from rehabgate.services.common.settings import GatekeeperSettings, settings_or_exit
from rehabgate.services.common.tracing import EventSpans, traced

from .intake import Limits
from .physio_web.app import physio_app
from .process import Entry, Report, process_batch
from .protocol_files import load_protocols
from .store import RedisClientStore
from .tenancy import Source, sources

#: How often a gatekeeper looks for pending entries of gatekeepers that are gone.
SWEEP_INTERVAL_S = 1.0


def create_app(settings: GatekeeperSettings | None = None) -> ServiceAsgi:
    settings = settings or settings_or_exit(GatekeeperSettings)
    configure_logging(settings.log_json, settings.log_level)
    log = structlog.get_logger("rehabgate.gatekeeper")
    if not settings.redis_url:
        raise SystemExit("gatekeeper: set REDIS_URL (or use `rehabgate up`)")
    protocols = load_protocols(settings.protocol_dirs)
    broker = connections.broker(
        settings, logger=log, log_level=logging.DEBUG, parser=raw_batch_parser,
        graceful_timeout=settings.shutdown_grace_s,
    )  # fmt: skip
    redis = connections.redis_client(settings)
    store = RedisClientStore(redis, settings.partitions, settings.max_event_bytes)
    limits = Limits(settings.max_event_bytes, timedelta(seconds=settings.max_future_s))
    metrics = GatekeeperMetrics()
    tracing = traced(broker, "gatekeeper", settings)

    inbound = sources(settings)
    order = {
        source.stream: ClientOrder(
            redis, source.stream, GATEKEEPER_GROUP, service="gatekeeper",
            consumer=settings.consumer, dead_after_ms=settings.takeover_after_ms,
            claim_idle_ms=settings.claim_idle_ms,
        )
        for source in inbound
    }  # fmt: skip
    stopping = asyncio.Event()
    #: The waiting room: per stream, entries whose client has an earlier entry that
    #: another live consumer is handling (held in `order[...].in_flight`).
    waiting: dict[str, dict[str, tuple[RawEntry, bool]]] = {s.stream: {} for s in inbound}
    woken = asyncio.Event()

    async def apply(
        entries: list[Entry], source: Source, reclaimed: bool, deferrable: set[str]
    ) -> set[str]:
        """Process entries (in stream order); returns the deferred ones' ids."""
        spans = EventSpans(
            tracing.tracer, "gatekeeper evaluate", [(e.entry_id, e.fields) for e in entries]
        )
        entries = [replace(e, trace=spans.fields(e.entry_id)) for e in entries]
        try:
            report = await process_batch(
                entries, store, protocols, source, deferrable=deferrable, limits=limits
            )
        except BaseException:
            spans.end({})  # the batch stays pending and is retried: no fates to record
            raise
        spans.end({i: _span_attributes(report, i) for i in spans.spans})
        reasons = {letter.entry_id: letter.reason for letter in report.dead_letters}
        metrics.handled(report.fates.values(), report.outcomes.values(), reasons.values())
        for entry in entries:
            _log_fate(log, entry.entry_id, report, reasons.get(entry.entry_id), reclaimed)
        if sum(len(v) for e in entries for v in e.fields.values()) > LARGE_BATCH_BYTES:
            release_soon()  # a huge (refused) entry: give its memory back to the system
        return {i for i, fate in report.fates.items() if fate == "deferred"}

    async def handle(
        delivered: list[RawEntry],
        source: Source,
        reclaimed: bool,
        deferrable: set[str],
        from_message: bool = True,
    ) -> set[str]:
        """Apply `delivered` in client order (common/consuming.py `ClientOrder`):
        with the earlier entries of its clients that nobody is handling (taken over,
        applied first), while entries whose client has an earlier one another live
        consumer is handling go to the waiting room (`waiting`), which applies them
        once it is done. Returns the delivered entries that must stay pending
        (deferred ones, parked; waiting ones); all else that was done is
        acknowledged here, except, `from_message` with nothing to keep, the
        delivered entries, which the message's acknowledgement covers."""
        gate = order[source.stream]
        delivered_ids = {i for i, _ in delivered}
        with gate.holding(delivered_ids):
            sorted_ = await gate.sort(delivered)
            with gate.holding(i for i, _ in sorted_.taken):
                allowed = set(deferrable)
                ready = sorted_.ready
                if sorted_.taken:
                    kept, more = await within_cap(source.stream, sorted_.taken)
                    allowed |= more
                    dropped = {i for i, _ in sorted_.taken} - {i for i, _ in kept}
                    ready = [e for e in ready if e[0] not in dropped]
                deferred = await apply([Entry(i, f) for i, f in ready], source, reclaimed,
                                       allowed) if ready else set()  # fmt: skip
                if deferred:
                    await gate.take(sorted(deferred), park=True)
                room = waiting[source.stream]
                for entry in sorted_.waiting:  # held until the waiting room is done with it
                    if entry[0] not in room:
                        gate.hold([entry[0]])
                    room[entry[0]] = (entry, entry[0] in allowed)
                if sorted_.waiting:
                    woken.set()
                keep = (deferred | {i for i, _ in sorted_.waiting}) & delivered_ids
                done = [i for i, _ in ready if i not in deferred]
                early = [i for i in done if keep or not from_message or i not in delivered_ids]
                if early:
                    await redis.xack(source.stream, GATEKEEPER_GROUP, *early)
        return keep

    async def wait_in_order() -> None:
        """The waiting room: retries its entries (each source's in one go, in stream
        order) until the earlier entries they wait for are done, backing off from
        5 ms to 100 ms; and, every `SWEEP_INTERVAL_S`, takes over the pending entries
        of gatekeepers that are gone (and this process's own failed batches), so
        they are applied within `takeover_after_ms` even when no later event of
        their clients comes. Stops with the process: what it holds stays pending
        and is taken over by the others once this process's heartbeat is gone."""
        pause, swept = 0.005, 0.0
        while not stopping.is_set():
            for source in inbound:
                room, gate = waiting[source.stream], order[source.stream]
                try:
                    if room:
                        held = dict(room)
                        room.clear()
                        try:
                            entries = [entry for entry, _ in held.values()]
                            allowed = {i for i, (_, ok) in held.items() if ok}
                            await handle(entries, source, False, allowed, from_message=False)
                        finally:
                            gate.release(held)
                    if time.monotonic() - swept >= SWEEP_INTERVAL_S:
                        orphans = await gate.orphans()
                        if orphans:
                            log.info("entries_taken_over", stream=source.stream,
                                     count=len(orphans))  # fmt: skip
                            rest, retry = await within_cap(source.stream, orphans)
                            await handle(rest, source, True, retry, from_message=False)
                except Exception as exc:  # left pending: retried on the next round
                    log.warning("ordering_round_failed", stream=source.stream,
                                error=type(exc).__name__)  # fmt: skip
            if time.monotonic() - swept >= SWEEP_INTERVAL_S:
                swept = time.monotonic()
            busy = any(waiting.values())
            pause = min(pause * 2, 0.1) if busy else 0.005
            woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause if busy else SWEEP_INTERVAL_S):
                    await (stopping.wait() if busy else woken.wait())

    async def within_cap(stream: str, entries: list[RawEntry]) -> tuple[list[RawEntry], set[str]]:
        """Entries claimed from another consumer (or again) count a delivery: those
        past `max_deliveries` are dead-lettered; returns the others, and which of
        them may still wait for their client's enrolment."""
        rest = await dead_letter_exhausted(
            redis, entries, stream=stream, group=GATEKEEPER_GROUP,
            dead_letter_stream=INBOUND_DEAD_LETTER, max_deliveries=settings.max_deliveries,
            log=log, metrics=metrics,
        )  # fmt: skip
        counts = await delivery_counts(redis, stream, GATEKEEPER_GROUP, [i for i, _ in rest])
        return rest, {i for i, _ in rest if counts[i] < settings.max_deliveries}

    def finish(keep: set[str]) -> None:
        """With delivered entries to keep pending (the rest is acknowledged by
        `handle`), the message must not be acknowledged as a whole."""
        if keep:
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
            the `traceparent` of the gatekeeper's span. One client's events are
            applied in stream order, across gatekeepers and crashes."""
            entries = raw_entries(msg)
            keep = await handle(entries, source, False, {i for i, _ in entries})
            finish(keep)

        @broker.subscriber(
            stream=StreamSub(
                source.stream, group=GATEKEEPER_GROUP,
                consumer=settings.consumer + CLAIMER_SUFFIX,
                batch=True, min_idle_time=settings.claim_idle_ms,
            )
        )  # fmt: skip
        async def on_inbound_reclaimed(msg: RedisBatchStreamMessage) -> None:
            """Entries left pending by a crashed consumer or a failed batch, re-applied
            idempotently; dead-lettered after `max_deliveries` attempts."""
            rest, retry = await within_cap(source.stream, raw_entries(msg))
            keep = await handle(rest, source, True, retry)
            finish(keep)

    for source in inbound:
        subscribe(source)
    log.info("protocols_loaded", protocols=sorted(protocols))
    groups = [(source.stream, GATEKEEPER_GROUP) for source in inbound]
    app = service_app("gatekeeper", broker, redis, settings, groups, log)
    sweeping: list[asyncio.Task[None]] = []

    @app.after_startup
    async def start_sweep() -> None:
        sweeping.append(asyncio.create_task(wait_in_order()))

    @app.on_shutdown
    async def stop_sweep() -> None:
        stopping.set()
        if sweeping:
            _, late = await asyncio.wait(sweeping, timeout=settings.shutdown_grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    app.after_shutdown(tracing.flush)
    routes = operations(app, broker, redis, groups, metrics, settings.ready_timeout_s)
    physio = physio_app(redis, settings, log, protocols)
    return ServiceAsgi.serving(
        app, routes, settings.http_host, settings.http_port, log, mounts={"/physio": physio}
    )


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
