"""OpenTelemetry tracing: one trace from a clinic's event to the client's message.

Trace context travels in W3C Trace Context form (`traceparent`, optional
`tracestate`) as extra fields of a stream entry, beside `event`, so a clinic
with a plain Redis client can start a trace by adding one field to its XADD,
and the event JSON (hashed into the audit chain, replayed, exported) stays free
of transport details. Each hop opens one span per event, a child of the context
the entry carried, and writes its own span's context into the entry it
produces:

    clinic XADD (traceparent) -> gatekeeper "evaluate" span -> evaluated entry
    (traceparent) -> notifier "notify" span -> client-message entry (traceparent)

FastStream's telemetry middleware adds a span per consumed batch on top, linked
to the contexts of the batch's entries. Spans are exported over OTLP/HTTP when
`REHABGATE_OTLP_ENDPOINT` is set; without it, contexts are still created and
carried (so traces join up downstream) but nothing is exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from faststream.redis import RedisBroker
from faststream.redis.opentelemetry import RedisTelemetryMiddleware
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from pydantic import AnyHttpUrl

from rehabgate.schemas.streams import TRACE_FIELDS

from .settings import CommonSettings

_PROPAGATOR = TraceContextTextMapPropagator()


def tracer_provider(
    service: str, otlp_endpoint: AnyHttpUrl | None, exporter: SpanExporter | None = None
) -> TracerProvider:
    """The service's own provider (never the global one, so tests can run both
    services in one process). `exporter` overrides OTLP, for tests."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"rehabgate-{service}"}))
    if exporter is None and otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=str(otlp_endpoint).rstrip("/") + "/v1/traces")
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider
    #: None when spans are not exported: contexts are then passed on as they came.
    tracer: trace.Tracer | None

    async def flush(self) -> None:
        """Export what is buffered and stop (the app's last shutdown hook)."""
        self.provider.shutdown()


def traced(
    broker: RedisBroker,
    service: str,
    settings: CommonSettings,
    exporter: SpanExporter | None = None,
) -> Tracing:
    """When spans are exported: trace `broker`'s consumers with FastStream's
    middleware (a span per batch) and give the service a tracer for its per-event
    spans. When not, no spans at all: making them cost ~10% of the gatekeeper's
    throughput for nothing, and the carried contexts still join up downstream."""
    provider = tracer_provider(service, settings.otlp_endpoint, exporter)
    if exporter is None and settings.otlp_endpoint is None:
        return Tracing(provider, None)
    broker.add_middleware(RedisTelemetryMiddleware(tracer_provider=provider))
    return Tracing(provider, provider.get_tracer(f"rehabgate.{service}"))


def carried_context(fields: Mapping[bytes, bytes]) -> Context | None:
    """The trace context an entry carries in its trace fields; None when it carries
    none, or a malformed one (a bad `traceparent` never refuses the event: its span
    is then a child of the batch's span)."""
    carrier = {
        name: value.decode("ascii", "replace")
        for name in TRACE_FIELDS
        if (value := fields.get(name.encode())) is not None
    }
    if not carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def event_span(
    tracer: trace.Tracer | None,
    name: str,
    context: Context | None,
    kind: trace.SpanKind,
    links: Sequence[trace.Link] = (),
) -> trace.Span:
    """A span of one event or message, child of `context` (else of the current
    span). Without a tracer (nothing exported): the carried context itself, as a
    span that records nothing, so it is passed on unchanged."""
    if tracer is None:
        return trace.get_current_span(context) if context is not None else trace.INVALID_SPAN
    return tracer.start_span(name, context=context, kind=kind, links=links)


def joined_span(tracer: trace.Tracer | None, name: str, traceparents: Iterable[str]) -> trace.Span:
    """A span continuing several traces at once (a coalesced message of several
    decisions): the child of the first valid context, linked to the others."""
    contexts = [
        c for tp in traceparents if tp and (c := carried_context({b"traceparent": tp.encode()}))
    ]
    links = [trace.Link(trace.get_current_span(c).get_span_context()) for c in contexts[1:]]
    first = contexts[0] if contexts else None
    return event_span(tracer, name, first, trace.SpanKind.PRODUCER, links)


def trace_fields(span: trace.Span) -> dict[str, str]:
    """The trace fields to write into the entry a span produces."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


class EventSpans:
    """One span per entry of a consumed batch, each a child of the context its
    entry carried (else of the current span: FastStream's batch span). Ended,
    with what became of each entry, by `end`."""

    def __init__(
        self,
        tracer: trace.Tracer | None,
        name: str,
        entries: Iterable[tuple[str, Mapping[bytes, bytes]]],
    ) -> None:
        self.spans = {
            entry_id: event_span(tracer, name, carried_context(fields), trace.SpanKind.CONSUMER)
            for entry_id, fields in entries
        }

    def fields(self, entry_id: str) -> dict[str, str]:
        """The trace fields for what the entry's span produces."""
        return trace_fields(self.spans[entry_id])

    def end(self, attributes: Mapping[str, Mapping[str, AttributeValue]]) -> None:
        """End every span, each with its entry's `attributes` (ids and outcomes only:
        spans leave the machine, so no health data)."""
        for entry_id, span in self.spans.items():
            span.set_attributes(attributes.get(entry_id, {}))
            span.end()
