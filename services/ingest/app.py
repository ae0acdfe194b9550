"""The ingest's HTTP application: a plain ASGI app (served by uvicorn).

| route | answers |
|---|---|
| `POST /v1/events` | 202 with each event's entry id; 400 / 413 / 422 naming each refused event and why (nothing written); 401 for any authentication failure, alike; 429 with `Retry-After` |
| `GET /v1/events/{event_id}` | the event's fate (fates.py); 404 for an id this clinic never posted, another clinic's included |
| `GET /health/live`, `/health/ready`, `/metrics` | as the other services |
| `GET /openapi.json` | the OpenAPI 3.1 document (openapi.py) |

Order of a POST: the key (before the body is read), the rate limit's bucket not
empty, the body's size (Content-Length, then while reading: never more than the
cap is read), its JSON and batch length, the rate for its event count, each
event's edge checks (accept.py), the write.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from redis.exceptions import RedisError

from rehabgate.services.common.connections import RedisClient, async_client
from rehabgate.services.common.settings import IngestSettings
from rehabgate.services.gatekeeper.intake import Limits

from . import accept
from .api_keys import KEYS_HASH, clinic_of, split_key
from .fates import fate_of

log = structlog.get_logger("ingest")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_EVENT_PATH = re.compile(r"^/v1/events/([0-9a-fA-F-]{1,64})$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UNAUTHORIZED = {
    "error": "unauthorized",
    "detail": "a valid API key is required: Authorization: Bearer rgk_...",
}
NO_STORE = [(b"cache-control", b"no-store")]
#: How long a key's record is used before it is read again (revocation's delay).
KEY_CACHE_S = 2.0


@dataclass
class Bucket:
    """A token bucket: `rate` events a second, at most `burst` at once."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def refill(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def take(self, n: int) -> float:
        """0 when `n` tokens were taken, else the seconds until they would be there."""
        if self.refill() >= n:
            self.tokens -= n
            return 0.0
        return (min(n, self.burst) - self.tokens) / self.rate


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rehabgate_ingest_requests",
            "Ingest HTTP requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.events = Counter(
            "rehabgate_ingest_events",
            "Events posted, by result (accepted, duplicate, refused).",
            ["result"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "rehabgate_ingest_request_seconds",
            "Time to answer a request, by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        for result in ("accepted", "duplicate", "refused"):
            self.events.labels(result)


class Ingest:
    """The ASGI application. `redis` is made at start-up (lifespan) unless given."""

    def __init__(self, settings: IngestSettings, redis: RedisClient | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self._owned = redis is None
        self.script: Any = None
        self.metrics = IngestMetrics()
        self.limits = Limits(settings.max_event_bytes)
        self.buckets: dict[str, Bucket] = {}
        self.key_cache: dict[str, tuple[bytes, float]] = {}
        self.phase = "starting"

    # -- ASGI --------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route, status = await self._route(scope, receive, send)
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.seconds.labels(route).observe(time.perf_counter() - started)

    async def startup(self) -> None:
        if self.redis is None:
            self.redis = async_client(
                self.settings.redis_url or "redis://127.0.0.1:6379/0",
                self.settings.redis_cluster,
            )
        self.script = accept.load_script(self.redis)
        self.phase = "running"
        log.info("ingest_started", clinics=sorted(self.settings.clinics))

    async def shutdown(self) -> None:
        self.phase = "stopping"
        if self._owned and self.redis is not None:
            await self.redis.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        method, path = scope["method"], scope["path"]
        if path == "/v1/events":
            if method != "POST":
                return "/v1/events", await _json(send, 405, {"error": "method not allowed"})
            return "/v1/events", await self._post(scope, receive, send)
        if found := _EVENT_PATH.match(path):
            if method != "GET":
                return "/v1/events/{id}", await _json(send, 405, {"error": "method not allowed"})
            return "/v1/events/{id}", await self._get(scope, send, found[1].lower())
        if method == "GET" and path == "/health/live":
            return path, await _json(send, 200, {"live": True})
        if method == "GET" and path == "/health/ready":
            failed = await self._not_ready()
            body = {"ready": False, "failed": failed} if failed else {"ready": True}
            return path, await _json(send, 503 if failed else 200, body)
        if method == "GET" and path == "/metrics":
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode()), *NO_STORE]
            return path, await _send(send, 200, generate_latest(self.metrics.registry), headers)
        if method == "GET" and path == "/openapi.json":
            from .openapi import document

            return path, await _json(send, 200, document())
        return "other", await _json(send, 404, {"error": "not found"})

    # -- routes ------------------------------------------------------------------
    async def _clinic(self, scope: Scope) -> str | None:
        """The clinic of the request's API key, or None (every failure alike)."""
        header = _header(scope, b"authorization")
        parts = split_key(header)
        key_id, secret = parts if parts else ("", "x" * 43)
        record = await self._record(key_id) if key_id else None
        clinic = clinic_of(record, secret)
        if clinic is None or accept.stream_of(self.settings, clinic) is None:
            return None
        return clinic

    async def _record(self, key_id: str) -> bytes | None:
        """A key's stored record, read again at most every KEY_CACHE_S seconds (so a
        revoked key is refused from at most that long after `ingest-key revoke`)."""
        now = time.monotonic()
        cached = self.key_cache.get(key_id)
        if cached is not None and now - cached[1] < KEY_CACHE_S:
            return cached[0]
        assert self.redis is not None
        found = await self.redis.hget(KEYS_HASH, key_id)
        record = found.encode() if isinstance(found, str) else found
        if record is None:
            self.key_cache.pop(key_id, None)
            return None
        if len(self.key_cache) >= 10_000:
            self.key_cache.clear()
        self.key_cache[key_id] = (record, now)
        return record

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> int:
        clinic = await self._clinic(scope)
        if clinic is None:
            return await _unauthorized(send)
        bucket = self.buckets.setdefault(
            clinic, Bucket(self.settings.ingest_rate_per_s, self.settings.ingest_burst)
        )
        if bucket.refill() < 1:
            return await _too_many(send, bucket.take(1))
        cap = self.settings.ingest_max_body_bytes
        body = await _read_body(scope, receive, cap)
        if body is None:
            return await _json(
                send, 413, {"error": "too large", "detail": f"body over {cap} bytes (not parsed)"}
            )
        try:
            items = accept.parse_body(body, self.settings.ingest_max_batch)
        except accept.TooMany as exc:
            return await _json(send, 413, {"error": "too large", "detail": str(exc)})
        except accept.BadBody as exc:
            return await _json(send, 400, {"error": "bad request", "detail": str(exc)})
        if wait := bucket.take(len(items)):
            return await _too_many(send, wait)
        stream = accept.stream_of(self.settings, clinic)
        assert stream is not None
        assert self.redis is not None
        source = accept.source_of(self.settings, clinic, stream)
        limits = Limits(self.limits.max_entry_bytes, _future(self.settings))
        candidates, refused = accept.check(items, source, limits)
        if not refused:
            accepted, refused = await accept.write(
                self.redis,
                self.script,
                stream,
                clinic,
                candidates,
                self.settings.ingest_record_ttl_s,
            )
        if refused:
            self.metrics.events.labels("refused").inc(len(refused))
            log.info("events_refused", clinic_id=clinic, count=len(refused), events=len(items))
            return await _json(
                send,
                422,
                {
                    "error": "events refused",
                    "detail": "nothing was written; fix or remove the refused events and post again",
                    "refused": [
                        {"index": r.index, "event_id": r.event_id, "reason": r.reason}
                        for r in refused
                    ],
                },
            )
        for a in accepted:
            self.metrics.events.labels(a.status).inc()
        return await _json(
            send,
            202,
            {
                "accepted": [
                    {
                        "index": a.index,
                        "event_id": a.event_id,
                        "entry_id": a.entry_id,
                        "status": a.status,
                        "status_url": f"/v1/events/{a.event_id}",
                    }
                    for a in accepted
                ]
            },
        )

    async def _get(self, scope: Scope, send: Send, event_id: str) -> int:
        clinic = await self._clinic(scope)
        if clinic is None:
            return await _unauthorized(send)
        stream = accept.stream_of(self.settings, clinic)
        assert stream is not None
        assert self.redis is not None
        answer = None
        if _UUID.match(event_id):
            answer = await fate_of(self.redis, stream, clinic, event_id, self.settings.partitions)
        if answer is None:
            return await _json(
                send, 404, {"error": "not found", "detail": "no such event id of this clinic"}
            )
        return await _json(send, 200, answer.as_json())

    async def _not_ready(self) -> list[str]:
        failed = []
        if self.phase != "running":
            failed.append("start-up not finished" if self.phase == "starting" else "shutting down")
        try:
            assert self.redis is not None
            await asyncio.wait_for(self.redis.ping(), self.settings.ready_timeout_s)
        except (TimeoutError, RedisError, OSError, AssertionError):
            failed.append("redis unreachable")
        return failed


def _future(settings: IngestSettings) -> Any:
    from datetime import timedelta

    return timedelta(seconds=settings.max_future_s)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _read_body(scope: Scope, receive: Receive, cap: int) -> bytes | None:
    """The body, or None as soon as it is known to be over `cap` bytes."""
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _unauthorized(send: Send) -> int:
    headers = [(b"www-authenticate", b'Bearer realm="rehabgate"')]
    return await _json(send, 401, UNAUTHORIZED, headers)


async def _too_many(send: Send, wait_s: float) -> int:
    retry = max(1, math.ceil(wait_s))
    return await _json(
        send,
        429,
        {
            "error": "rate limited",
            "detail": f"this clinic's event rate is exhausted; retry in {retry} s",
        },
        [(b"retry-after", str(retry).encode())],
    )


async def _json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> int:
    data = json.dumps(body, separators=(",", ":")).encode()
    return await _send(
        send, status, data, [(b"content-type", b"application/json"), *NO_STORE, *(headers or [])]
    )


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


def create_app(settings: IngestSettings | None = None) -> Ingest:
    from rehabgate.services.common.settings import settings_or_exit

    return Ingest(settings or settings_or_exit(IngestSettings))


def serve(settings: IngestSettings) -> None:
    """Run the ingest until SIGTERM / Ctrl-C (uvicorn)."""
    import uvicorn

    from rehabgate.services.common.logging import configure_logging

    configure_logging(settings.log_json, settings.log_level)
    _wait_for_port(settings.http_host, settings.ingest_http_port)
    config = uvicorn.Config(
        Ingest(settings),
        host=settings.http_host,
        port=settings.ingest_http_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,
    )
    uvicorn.Server(config).run()


def _wait_for_port(host: str, port: int, every_s: float = 5.0) -> None:
    """Until the port can be bound: a second `rehabgate up` on one host (or anything
    else holding the port) leaves this ingest waiting, logged once as
    `http_unavailable`, instead of exiting and taking its `up` down with it."""
    import socket

    logged = False
    while True:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                return
            except OSError:
                if not logged:
                    log.warning("http_unavailable", host=host, port=port)
                    logged = True
        time.sleep(every_s)
