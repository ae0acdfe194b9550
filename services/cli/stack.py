"""Run the whole stack locally: Redis (embedded unless REDIS_URL is set), the
gatekeeper, the notifier and the HTTPS ingest, each service in its own process, as
in production.

`rehabgate up` (`run_up`) holds a lock on `.rehabgate/up.lock` while it runs, so a
second `up` in the same directory refuses (naming the live URL) instead of
starting a second server over the same data. It writes `.rehabgate/redis.url` only
once the server answers, with `.rehabgate/up.json` (the URL and the services'
metrics addresses, which `rehabgate demo` reads to use the running services), and
removes both on exit. It watches Redis as well as the services: when Redis stops
answering (the embedded server died), it says so and exits 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import redis

from rehabgate.services.common.redis_server import EmbeddedRedis
from rehabgate.services.common.settings import Settings

STATE_DIR = Path(".rehabgate")
URL_FILE = STATE_DIR / "redis.url"
#: What a running `up` offers other commands: {"redis_url", "pid", "metrics": {...}}.
UP_FILE = STATE_DIR / "up.json"
LOCK_FILE = STATE_DIR / "up.lock"
#: Consecutive failed PINGs (one a second) before `up` calls its Redis dead.
REDIS_MISSES = 3
#: The services `up` runs, each its own process.
SERVICES = ("gatekeeper", "notifier", "ingest")
_ANY_HOST = frozenset({"0.0.0.0", "::"})  # noqa: S104 - only to name loopback instead


class Stack:
    """`with Stack(...) as stack:` starts everything; leaving stops everything."""

    def __init__(
        self,
        redis_url: str | None,
        data_dir: Path | None,
        log_dir: Path | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """`log_dir`: write each service's logs to `<log_dir>/<service>.log` instead of
        this terminal. `service_env`: extra environment per service, e.g. each its own
        `REDIS_URL` with its own Redis user (`rehabgate acl generate`)."""
        self.redis_url = redis_url
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.service_env = service_env or {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._exit = ExitStack()

    def __enter__(self) -> Stack:
        try:
            if self.redis_url is None:
                server = self._exit.enter_context(EmbeddedRedis(data_dir=self.data_dir))
                self.redis_url = server.url
            env = {**os.environ, "REDIS_URL": self.redis_url}
            for service in SERVICES:
                out = None
                if self.log_dir is not None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    out = self._exit.enter_context((self.log_dir / f"{service}.log").open("ab"))
                self.processes[service] = subprocess.Popen(
                    [sys.executable, "-m", "rehabgate.services.cli.main", service],
                    env={**env, **self.service_env.get(service, {})},
                    stdout=out,
                    stderr=out,
                )
                self._exit.callback(self._stop, service)
        except BaseException:
            self._exit.close()
            raise
        return self

    def _stop(self, service: str) -> None:
        process = self.processes.pop(service)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def dead(self) -> list[str]:
        """Services whose process has exited."""
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def redis_answers(self, timeout: float = 1.0) -> bool:
        """Whether Redis answers a PING now (a refusal by ACL counts as an answer)."""
        assert self.redis_url is not None
        return answers(self.redis_url, timeout)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether the Redis at `url` answers a PING (a refusal by ACL counts as an answer)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except (redis.AuthenticationError, redis.ResponseError):
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True


def live_up(redis_url: str | None = None) -> dict[str, Any] | None:
    """The `rehabgate up` running in this directory (its up.json), if one holds the
    lock; with `redis_url`, only when it serves that URL."""
    try:
        running = json.loads(UP_FILE.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(running, dict) or _lock_is_free():
        return None
    if redis_url is not None and running.get("redis_url") != redis_url:
        return None
    return running


def _lock_is_free() -> bool:
    try:
        with LOCK_FILE.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


@contextlib.contextmanager
def _up_lock() -> Iterator[IO[str] | None]:
    """The directory's `up` lock, held until exit; None when another `up` holds it."""
    STATE_DIR.mkdir(exist_ok=True)
    handle = LOCK_FILE.open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield handle
    finally:
        handle.close()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)


def run_up(settings: Settings) -> int:
    """`rehabgate up`: see the module docstring. Exit codes as in errors.py."""
    from .errors import ALREADY_RUNNING, REDIS, CliError, shown_url

    with _up_lock() as lock:
        if lock is None:
            try:
                url = URL_FILE.read_text().strip()
            except OSError:
                url = "(still starting)"
            raise CliError(
                f"rehabgate up: already running in this directory: REDIS_URL={url}",
                ALREADY_RUNNING,
            )
        for stale in (URL_FILE, UP_FILE):  # left by an `up` that was killed
            stale.unlink(missing_ok=True)
        data_dir = None if settings.redis_url else STATE_DIR / "redis"
        if settings.redis_url and not answers(settings.redis_url, timeout=5):
            raise CliError(
                f"rehabgate up: Redis unreachable at {shown_url(settings.redis_url)}", REDIS
            )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            with Stack(settings.redis_url, data_dir=data_dir) as stack:
                assert stack.redis_url is not None
                host = "127.0.0.1" if settings.http_host in _ANY_HOST else settings.http_host
                metrics = {
                    "gatekeeper": f"http://{host}:{settings.http_port}/metrics",
                    "notifier": f"http://{host}:{settings.notifier_http_port}/metrics",
                    "ingest": f"http://{host}:{settings.ingest_http_port}/metrics",
                }
                _write_atomically(
                    UP_FILE,
                    json.dumps(
                        {"redis_url": stack.redis_url, "pid": os.getpid(), "metrics": metrics}
                    ),
                )
                _write_atomically(URL_FILE, stack.redis_url)
                print(f"rehabgate up: REDIS_URL={stack.redis_url} (Ctrl-C to stop)", flush=True)
                return _watch(stack)
        except KeyboardInterrupt:
            return 0
        finally:
            for path in (URL_FILE, UP_FILE):
                path.unlink(missing_ok=True)


def _watch(stack: Stack) -> int:
    """Until Ctrl-C: 0; a service or Redis gone: says which on stderr and returns 1."""
    from .errors import shown_url

    def redis_gone() -> int:
        assert stack.redis_url is not None
        print(
            f"rehabgate up: Redis at {shown_url(stack.redis_url)} stopped answering; stopping",
            file=sys.stderr,
        )
        return 1

    misses = 0
    while True:
        for _ in range(2):
            if dead := stack.dead():
                # Services exit when their Redis goes: name the cause, not the symptom.
                if not stack.redis_answers():
                    return redis_gone()
                print(f"rehabgate up: {', '.join(dead)} exited; stopping", file=sys.stderr)
                return 1
            time.sleep(0.5)
        misses = 0 if stack.redis_answers() else misses + 1
        if misses >= REDIS_MISSES:
            return redis_gone()
