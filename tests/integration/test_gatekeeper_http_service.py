"""`rehabgate gatekeeper` serves the physio pages while it consumes (issue 5): the
history of events it applied is readable over HTTP, SIGTERM still ends it with 0,
and a second gatekeeper on the same host, whose port is taken, keeps consuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from rehabgate.schemas.streams import INBOUND
from rehabgate.services.cli.health import check
from rehabgate.services.common.redis_server import free_port
from tests.audit_histories import rich_history
from tests.physio_server import request
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def gatekeeper(redis_url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rehabgate.services.cli.main", "gatekeeper"],
            env={**os.environ, "REDIS_URL": redis_url, "REHABGATE_LOG_JSON": "true", **env},
            stdout=out, stderr=out,
        )  # fmt: skip


def stopped(process: subprocess.Popen[bytes]) -> int:
    """Its exit code after SIGTERM; killed (and the test failed) if it hangs."""
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_gatekeeper_serves_what_it_applied_and_stops_cleanly(
    redis_url: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    clinic, client, token, port = f"clinic-{run}", f"served-{run}", uuid.uuid4().hex, free_port()
    env = {
        "REHABGATE_HTTP_PORT": str(port),
        "REHABGATE_CLINIC_TOKENS": json.dumps({clinic: token}),
    }
    first = gatekeeper(
        redis_url, tmp_path / "first.log", REHABGATE_CONSUMER=f"http-a-{run}", **env
    )
    second = None
    try:
        wait_for(
            lambda: check(redis_url, "gatekeeper", f"http-a-{run}")[0], what="a healthy gatekeeper"
        )
        events = rich_history(client, clinic)
        for e in events:
            sync_redis.xadd(INBOUND, {"event": json.dumps(e)})
        url = f"http://127.0.0.1:{port}/physio/api/history?client={client}&per_page=500"

        def applied() -> dict[str, Any] | None:
            reply = request(url, token=token)
            body = json.loads(reply.body) if reply.status == 200 else None
            return body if body and body["total"] == len(events) else None

        history = wait_for(applied, what="the whole history applied")
        assert history["chain"]["ok"] is True
        assert [i["seq"] for i in history["items"]] == list(range(1, len(events) + 1))
        assert request(url).status == 401

        second = gatekeeper(
            redis_url, tmp_path / "second.log", REHABGATE_CONSUMER=f"http-b-{run}", **env
        )
        wait_for(lambda: check(redis_url, "gatekeeper", f"http-b-{run}")[0],
                 what="the second gatekeeper healthy")  # fmt: skip
        wait_for(lambda: '"event": "http_unavailable"' in (tmp_path / "second.log").read_text(),
                 what="the second gatekeeper to report its port taken")  # fmt: skip
        assert second.poll() is None
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
    assert stopped(first) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert second is not None
    assert stopped(second) == 0, (tmp_path / "second.log").read_text()[-3000:]
    log = (tmp_path / "first.log").read_text()
    assert '"event": "http_listening"' in log
    assert token not in log
