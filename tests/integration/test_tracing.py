"""One trace from a clinic's event to the client's message (issue 8): the real
services export their spans over OTLP/HTTP to a collector stand-in that decodes
the real protobuf requests, and the trace context rides the stream entries.

Runs its own Redis (the embedded server): the services are started with an OTLP
endpoint only this test listens on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from rehabgate.schemas.streams import INBOUND, client_messages_stream, evaluated_stream
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.redis_server import EmbeddedRedis, free_port
from tests.events import enrolment, unique_client
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLINIC_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLINIC_SPAN = "00f067aa0ba902b7"


class Collector:
    """Accepts OTLP/HTTP trace exports and keeps every span, decoded."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = next(a.value.string_value for a in resource.resource.attributes
                                   if a.key == "service.name")  # fmt: skip
                    for scope in resource.scope_spans:
                        collector.spans.extend(_span(service, s) for s in scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, service: str, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["service"] == service and s["name"] == name]


def _span(service: str, span: Any) -> dict[str, Any]:
    return {
        "service": service,
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_id": span.parent_span_id.hex(),
        "attributes": {a.key: a.value.string_value for a in span.attributes},
    }


@pytest.fixture
def traced_stack(tmp_path: Path) -> Iterator[tuple[Collector, redis.Redis]]:
    collector = Collector()
    server = EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=False).start()
    env = {"REHABGATE_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "100",
           "REHABGATE_HTTP_PORT": str(free_port()),
           "REHABGATE_NOTIFIER_HTTP_PORT": str(free_port())}  # fmt: skip
    try:
        with Stack(server.url, None, tmp_path / "logs", {"gatekeeper": env, "notifier": env}):
            yield collector, redis.Redis.from_url(server.url)
    finally:
        server.stop()
        collector.server.shutdown()


def _message_of(r: redis.Redis, client: str) -> dict[bytes, bytes] | None:
    for _, fields in r.xrange(client_messages_stream(0)):
        if json.loads(fields[b"message"])["client_id"] == client:
            return fields
    return None


def test_a_clinic_trace_continues_through_gatekeeper_and_notifier_to_the_message(
    traced_stack: tuple[Collector, redis.Redis],
) -> None:
    collector, r = traced_stack
    client = unique_client("traced")
    r.xadd(INBOUND, {"event": json.dumps(enrolment(client)),
                     "traceparent": f"00-{CLINIC_TRACE}-{CLINIC_SPAN}-01"})  # fmt: skip
    message = wait_for(lambda: _message_of(r, client))

    decision = next(f for _, f in r.xrange(evaluated_stream(0)) if client.encode() in f[b"event"])
    decision_trace = decision[b"traceparent"].decode().split("-")
    message_trace = message[b"traceparent"].decode().split("-")
    assert decision_trace[1] == message_trace[1] == CLINIC_TRACE

    evaluate = wait_for(lambda: collector.named("rehabgate-gatekeeper", "gatekeeper evaluate"))
    notify = wait_for(lambda: collector.named("rehabgate-notifier", "notifier deliver"))
    assert evaluate[0]["trace_id"] == notify[0]["trace_id"] == CLINIC_TRACE
    assert evaluate[0]["parent_id"] == CLINIC_SPAN  # the clinic's span is the parent
    assert decision_trace[2] == evaluate[0]["span_id"]
    assert notify[0]["parent_id"] == evaluate[0]["span_id"]
    assert message_trace[2] == notify[0]["span_id"]
    assert evaluate[0]["attributes"]["rehabgate.fate"] == "applied"
    assert evaluate[0]["attributes"]["rehabgate.outcome"] == "unlocked"
    # FastStream's middleware traced the consumed batches too.
    assert any(s["service"] == "rehabgate-gatekeeper" and s["name"].endswith("process")
               for s in collector.spans)  # fmt: skip


def test_an_event_without_or_with_a_broken_traceparent_starts_a_trace_of_its_own(
    traced_stack: tuple[Collector, redis.Redis],
) -> None:
    collector, r = traced_stack
    plain, broken = unique_client("untraced"), unique_client("badtrace")
    r.xadd(INBOUND, {"event": json.dumps(enrolment(plain))})
    r.xadd(INBOUND, {"event": json.dumps(enrolment(broken)), "traceparent": "00-nonsense"})
    for client in (plain, broken):
        fields = wait_for(lambda c=client: _message_of(r, c))
        version, trace_id, span_id, _ = fields[b"traceparent"].decode().split("-")
        assert version == "00"
        assert int(trace_id, 16)
        assert int(span_id, 16)
        assert trace_id != CLINIC_TRACE
    evaluated = wait_for(
        lambda: len(collector.named("rehabgate-gatekeeper", "gatekeeper evaluate")) >= 2 or None
    )
    assert evaluated
    fates = [s["attributes"]["rehabgate.fate"]
             for s in collector.named("rehabgate-gatekeeper", "gatekeeper evaluate")]  # fmt: skip
    assert fates == ["applied", "applied"]


def test_without_an_exporter_the_clinics_context_is_passed_on_unchanged(tmp_path: Path) -> None:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=False).start()
    env = {"REHABGATE_HTTP_PORT": str(free_port()),
           "REHABGATE_NOTIFIER_HTTP_PORT": str(free_port())}  # fmt: skip
    traceparent = f"00-{CLINIC_TRACE}-{CLINIC_SPAN}-01"
    try:
        with Stack(server.url, None, tmp_path / "logs", {"gatekeeper": env, "notifier": env}):
            r = redis.Redis.from_url(server.url)
            traced, plain = unique_client("passed"), unique_client("plain")
            r.xadd(INBOUND, {"event": json.dumps(enrolment(traced)), "traceparent": traceparent})
            r.xadd(INBOUND, {"event": json.dumps(enrolment(plain))})
            assert wait_for(lambda: _message_of(r, traced))[b"traceparent"] == traceparent.encode()
            assert b"traceparent" not in wait_for(lambda: _message_of(r, plain))
    finally:
        server.stop()
