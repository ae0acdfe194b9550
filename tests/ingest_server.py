"""A real `rehabgate ingest` (and, when asked, a gatekeeper) as subprocesses on a
private server, for the ingest's tests and the README's curl examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import httpx

from rehabgate.services.common.redis_server import free_port
from tests.waiting import wait_for

REHABGATE = [sys.executable, "-m", "rehabgate.services.cli.main"]


def base_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHABGATE_")}
    return {**env, "REDIS_URL": redis_url, "REHABGATE_LOG_JSON": "true", **extra}


def issue_key(redis_url: str, clinic: str, clinics: Mapping[str, object] | None = None) -> str:
    env = base_env(redis_url, REHABGATE_CLINICS=json.dumps(clinics or {}))
    done = subprocess.run(
        [*REHABGATE, "ingest-key", "issue", clinic], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Ingest:
    url: str
    process: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)


@contextmanager
def running(redis_url: str, service: str, port: int, env: Mapping[str, str]) -> Iterator[str]:
    """Run `rehabgate SERVICE` until the block ends; yields its base URL once ready."""
    variable = {"ingest": "REHABGATE_INGEST_HTTP_PORT", "gatekeeper": "REHABGATE_HTTP_PORT"}
    full = base_env(redis_url, **{variable[service]: str(port)}, **env)
    process = subprocess.Popen(
        [*REHABGATE, service], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{service} exited: {process.stderr.read()!r:.2000}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"{url}/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, what=f"{service} ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def stack(
    redis_url: str, clinics: Mapping[str, object], gatekeeper_clinics: Mapping[str, object],
    **ingest_env: str,
) -> Iterator[tuple[str, ExitStack]]:  # fmt: skip
    """An ingest serving `clinics` and a gatekeeper reading `gatekeeper_clinics`."""
    with ExitStack() as stack_:
        stack_.enter_context(
            running(
                redis_url,
                "gatekeeper",
                free_port(),
                {"REHABGATE_CLINICS": json.dumps(gatekeeper_clinics)},
            )
        )
        url = stack_.enter_context(
            running(
                redis_url,
                "ingest",
                free_port(),
                {"REHABGATE_CLINICS": json.dumps(clinics), **ingest_env},
            )
        )
        yield url, stack_
