"""Run a FastStream service as an ASGI app under uvicorn without losing what the
plain FastStream runner gave us.

`AsgiFastStream.run` as shipped (FastStream 0.7.8) has three gaps for a service:
its `exit()` does nothing outside the `faststream run` CLI, so a subscriber that
stops for good (a lost consumer group) would leave the process up; an exception
from a shutdown hook is swallowed by uvicorn's lifespan, so the process would
exit 0; and uvicorn re-raises SIGTERM after its graceful shutdown, so a stopped
service would die by the signal instead of exiting 0. `ServiceAsgi` closes all
three and listens on the configured host and port under either entry point.

Besides FastStream's exact-path routes, `mounts` hands every request under a
path prefix to an ASGI app of its own: the gatekeeper's physio web app (a
Starlette app) is mounted at `/physio` this way.

Consuming events is the service's duty; HTTP is a side door. When the port is
taken (a second gatekeeper on the same host) the service logs `http_unavailable`
at error level and goes on consuming, rather than refusing to start.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import signal
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import structlog
import uvicorn
from faststream import FastStream
from faststream.asgi import AsgiFastStream
from faststream.asgi.app import CliRunState, cast_uvicorn_params
from faststream.asgi.types import ASGIApp, Receive, Scope, Send


class ServiceAsgi(AsgiFastStream):
    """A FastStream service that also serves HTTP routes."""

    http_host = "127.0.0.1"
    http_port = 8080
    failure: BaseException | None = None
    service_log: structlog.typing.FilteringBoundLogger | None = None
    mounts: Mapping[str, ASGIApp] = MappingProxyType({})

    @classmethod
    def serving(
        cls,
        app: FastStream,
        routes: Sequence[tuple[str, ASGIApp]],
        host: str,
        port: int,
        log: structlog.typing.FilteringBoundLogger,
        mounts: Mapping[str, ASGIApp] | None = None,
    ) -> ServiceAsgi:
        """`app` (with its hooks) as an ASGI app serving `routes` on host:port, and
        each of `mounts` (prefix -> ASGI app) for every path under its prefix."""
        served = cls.from_app(app, asgi_routes=routes)
        served.mounts = dict(mounts or {})
        # A subscriber that stops for good calls `exit()` on the app in its broker's
        # context: the plain app it was set up with. Point that at the served app,
        # whose exit stops uvicorn and so the whole service.
        app.context.set_global("app", served)
        served.http_host, served.http_port, served.service_log = host, port, log
        return served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, mounted in self.mounts.items():
                if path == prefix or path.startswith(prefix + "/"):
                    await mounted(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().lifespan(scope, receive, send)
        except BaseException as exc:
            self.failure = exc
            raise

    async def run(
        self,
        log_level: int = logging.INFO,
        run_extra_options: dict[str, Any] | None = None,
    ) -> None:
        """Serve until stopped; re-raise what the lifespan raised (a lost consumer
        group), so the process exits non-zero and a supervisor restarts it."""
        options = cast_uvicorn_params(
            {"host": self.http_host, "port": self.http_port, **(run_extra_options or {})}
        )
        self._log_level, self._run_extra_options = log_level, options
        known = set(inspect.signature(uvicorn.Config).parameters)
        passed = {k: v for k, v in options.items() if k in known and k not in ("app", "lifespan")}
        # Logs stay structlog JSON lines: uvicorn configures no logging of its own, and
        # each physio read is logged by the routes themselves (ids and status only).
        config = uvicorn.Config(
            app=self,
            log_level=log_level,
            lifespan="on",
            **{"log_config": None, "access_log": False, **passed},
        )
        server = uvicorn.Server(config)
        self._server = CliRunState(server, options)
        listening = self._listen(config.host, config.port)
        try:
            with _signals_end_quietly():
                await server.serve(sockets=listening)
        finally:
            for sock in listening:
                sock.close()
        if self.failure is not None:
            raise self.failure

    def _listen(self, host: str, port: int) -> list[socket.socket]:
        """The listening socket, or none when the address is taken."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if self.service_log is not None:
                self.service_log.error("http_unavailable", host=host, port=port, error=str(exc))
            return []
        sock.set_inheritable(True)
        if self.service_log is not None:
            self.service_log.info("http_listening", host=host, port=sock.getsockname()[1])
        return [sock]


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut down; the
    shutdown was graceful, so that re-raise should end the process normally."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda *_: None)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
