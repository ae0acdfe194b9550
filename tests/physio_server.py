"""The physio routes served by a real uvicorn on loopback, in a thread, for the HTTP
and browser tests: the same routes the gatekeeper serves, without its consumers (so
a test server never takes events from the shared inbound stream). A plain module:
tests import it directly."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog
import uvicorn
from pydantic import SecretStr
from redis.asyncio import Redis

from rehabgate.services.common.redis_server import free_port
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.physio_web.app import physio_app
from rehabgate.services.gatekeeper.protocol_files import load_protocols


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@contextmanager
def physio_server(
    redis_url: str, tokens: Mapping[str, str], log: Any = None, **settings_: Any
) -> Iterator[str]:
    """Yields the base URL, e.g. http://127.0.0.1:PORT. `log`: a structlog-like logger
    to record the routes' log lines (default: a real one); `settings_`: more settings
    (e.g. `physio_credentials`, a file written with CredentialsFile)."""
    settings = Settings(
        redis_url=redis_url,
        clinic_tokens={clinic: SecretStr(token) for clinic, token in tokens.items()},
        **settings_,
    )
    redis = Redis.from_url(redis_url)
    routed = physio_app(
        redis,
        settings,
        log or structlog.get_logger("rehabgate.test.physio"),
        load_protocols(settings.protocol_dirs),
    )

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """The routes, with a lifespan that closes Redis (no broker to start here)."""
        if scope["type"] != "lifespan":
            await routed(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await redis.aclose()
        await send({"type": "lifespan.shutdown.complete"})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="physio-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("physio test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def request(
    url: str,
    token: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request, redirects not followed (the sign-in answers 303)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


@dataclass
class RecordingLog:
    """Stands in for a structlog logger and keeps every line (event and fields)."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    bound: dict[str, Any] = field(default_factory=dict)

    def bind(self, **fields: Any) -> RecordingLog:
        return RecordingLog(self.lines, {**self.bound, **fields})

    def _line(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append({"level": level, "event": event, **self.bound, **fields})

    def info(self, event: str, **fields: Any) -> None:
        self._line("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._line("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._line("error", event, **fields)
