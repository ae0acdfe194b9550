"""A small TCP fault proxy for loopback: services -> proxy -> Redis.

Our machines have neither netem nor a toxiproxy server (reliability.md §0.8), so
network faults come from this proxy, modelled on toxiproxy's toxics: added
latency with jitter, connection resets, and a blackhole that swallows all data
for a while and then closes the connections it swallowed data from (toxiproxy's
`timeout` toxic with a timeout). It runs its own asyncio loop in a daemon thread,
so a synchronous harness can turn faults on and off while services talk through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

CHUNK = 64 * 1024
T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    """One proxied client connection: both directions, and whether a blackhole hit it."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    swallowed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """`with FaultProxy(redis_port) as proxy:` services use `proxy.url`; faults are
    switched from any thread with `set_latency`, `reset_all` and `blackhole`."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.latency_s = 0.0
        self.jitter_s = 0.0
        self.resets = 0
        self._blackholed = False
        self._links: set[_Link] = set()
        self._rng = random.Random(0)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def set_latency(self, latency_ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every chunk in both directions by latency ± jitter (0 turns it off)."""
        self.latency_s, self.jitter_s = latency_ms / 1000, jitter_ms / 1000

    def reset_all(self) -> int:
        """Abort every open connection with a TCP RST; returns how many."""
        return self._call(self._reset(lambda link: True))

    def blackhole(self, seconds: float) -> int:
        """Swallow all data for `seconds` (new connections are accepted and swallowed
        too), then reset the connections that lost data, so their clients see an
        error instead of waiting forever. Blocks for `seconds`; returns resets."""
        self._blackholed = True
        try:
            time.sleep(seconds)
        finally:
            self._blackholed = False
        return self._call(self._reset(lambda link: link.swallowed))

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, link)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._links.discard(link)
        _abort(writer)
        _abort(up_writer)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction chunk by chunk; order is kept, faults apply per chunk."""
        try:
            while data := await reader.read(CHUNK):
                if self._blackholed:
                    link.swallowed = True
                    continue
                if self.latency_s:
                    jitter = self._rng.uniform(-self.jitter_s, self.jitter_s)
                    await asyncio.sleep(max(0.0, self.latency_s + jitter))
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()

    async def _reset(self, which: Callable[[_Link], bool]) -> int:
        chosen = [link for link in self._links if which(link)]
        for link in chosen:
            _abort(link.client)
            _abort(link.upstream)
            for task in link.tasks:
                task.cancel()
        self.resets += len(chosen)
        return len(chosen)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset(lambda link: True)
        with contextlib.suppress(Exception):
            if self._server is not None:
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a dropped network path or a crashed peer would."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
