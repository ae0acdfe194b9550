"""Run the whole stack locally: Redis (embedded unless REDIS_URL is set), the
gatekeeper and the notifier, each service in its own process, as in production."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

from rehabgate.services.common.redis_server import EmbeddedRedis

STATE_DIR = Path(".rehabgate")
URL_FILE = STATE_DIR / "redis.url"


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
            for service in ("gatekeeper", "notifier"):
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()
