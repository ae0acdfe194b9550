"""SIGTERM under load ends a service within a few seconds and loses nothing.

Each test runs the services as real processes on a private Redis, keeps them busy
with a backlog, sends SIGTERM while they are working and measures how long the
process takes to exit (bound: `EXIT_WITHIN_S`). Whatever the stopped process held
was either committed or left pending: a new process finishes the work, and every
event is applied exactly once (gatekeeper), every decision that calls for a
message has exactly one message and receipt (notifier)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_stream,
    receipts_stream,
)
from rehabgate.services.common.heartbeat import heartbeat_key
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.redis_server import EmbeddedRedis
from tests.events import checkin, enrolment, event, session, unique_client
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: "Within a few seconds": generous for a busy 2-core machine, far below the 30 s a
#: supervisor (compose, bench) waits before it kills.
EXIT_WITHIN_S = 10.0
DAYS = 25  # events stay in the past: the gatekeeper refuses occurred_at far ahead


@pytest.fixture
def server(tmp_path: Path) -> Iterator[redis.Redis]:
    """A private server: the services' groups and streams are this test's alone."""
    with EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=False) as embedded:
        client = redis.Redis.from_url(embedded.url)
        try:
            yield client
        finally:
            client.close()


def url_of(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


class Services:
    """Service processes on the test's server, their output in the test's directory."""

    def __init__(self, client: redis.Redis, workdir: Path) -> None:
        self.url, self.workdir = url_of(client), workdir
        self.client = client
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, kind: str, consumer: str) -> subprocess.Popen[bytes]:
        began = int(time.time() * 1000)
        with (self.workdir / f"{kind}-{consumer}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "rehabgate.services.cli.main", kind],
                env={**os.environ, "REDIS_URL": self.url, "REHABGATE_CONSUMER": consumer,
                     "REHABGATE_CLAIM_IDLE_MS": "1000", "REHABGATE_HTTP_PORT": "0",
                     "REHABGATE_NOTIFIER_HTTP_PORT": "0", "REHABGATE_LOG_JSON": "true"},
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.started.append(process)

        def consuming() -> bool:
            assert process.poll() is None, f"{kind} exited with {process.returncode}"
            beat = self.client.hget(heartbeat_key(kind), consumer)
            return beat is not None and int(beat) >= began

        wait_for(consuming, timeout=60)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def services(server: redis.Redis, tmp_path: Path) -> Iterator[Services]:
    running = Services(server, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def sigterm_and_time(process: subprocess.Popen[bytes]) -> tuple[float, int]:
    """Seconds from SIGTERM to exit, and the exit code (waits at most 60 s)."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=60)
    return time.monotonic() - began, code


def group_info(client: redis.Redis, stream: str, group: str) -> dict[str, int]:
    try:
        groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    except redis.ResponseError:  # no stream yet
        return {"read": 0, "lag": -1, "pending": -1}
    info = groups.get(group)
    if info is None:
        return {"read": 0, "lag": -1, "pending": -1}
    return {"read": int(info["entries-read"] or 0), "lag": int(info["lag"] or 0),
            "pending": int(info["pending"])}  # fmt: skip


def drained(client: redis.Redis, stream: str, group: str) -> bool:
    info = group_info(client, stream, group)
    return info["lag"] == 0 and info["pending"] == 0


def publish(client: redis.Redis, events: list[dict[str, object]]) -> None:
    pipe = client.pipeline(transaction=False)
    for one in events:
        pipe.xadd(INBOUND, {"event": json.dumps(one)})
    pipe.execute()


def test_gatekeeper_sigterm_under_load_exits_within_seconds_and_loses_nothing(
    server: redis.Redis, services: Services
) -> None:
    clients = [unique_client("term") for _ in range(80)]
    events = [enrolment(c) for c in clients]
    events += [session(c, day) for day in range(DAYS) for c in clients]
    first = services.start("gatekeeper", "term-1")
    publish(server, events)
    # Mid-run, once well under way: it holds a batch or is about to read one.
    wait_for(lambda: group_info(server, INBOUND, GATEKEEPER_GROUP)["read"] >= 300, timeout=60)
    at_sigterm = group_info(server, INBOUND, GATEKEEPER_GROUP)

    seconds, code = sigterm_and_time(first)

    # mid-run when the signal went: entries still unread or unacknowledged (read after
    # the exit, the group would also count what the grace period let it finish)
    assert at_sigterm["read"] < len(events) or at_sigterm["pending"] > 0, at_sigterm
    assert code == 0
    print(f"gatekeeper exited {seconds:.2f}s after SIGTERM under load")
    assert seconds < EXIT_WITHIN_S, f"gatekeeper took {seconds:.1f}s to exit after SIGTERM"
    services.start("gatekeeper", "term-2")
    wait_for(lambda: drained(server, INBOUND, GATEKEEPER_GROUP), timeout=180, every=0.2)
    for client in clients:
        keys = ClientKeys.of(client, 1)
        assert server.scard(keys.processed) == DAYS + 1, client  # every event, once
        assert server.xlen(keys.audit) == DAYS + 1, client  # one audit entry each


def test_notifier_sigterm_under_load_exits_within_seconds_and_loses_nothing(
    server: redis.Redis, services: Services
) -> None:
    """A backlog of decisions, most of which call for a message (every check-in with
    swelling flags the client; a clinician approval unflags them)."""
    clients = [unique_client("nterm") for _ in range(60)]
    events = [enrolment(c) for c in clients]
    for day in range(1, DAYS):
        events += [checkin(c, day, swelling=True) for c in clients]
        events += [
            event("clinician.action", c, hours=24 * day + 2, action="approve",
                  reason="reviewed in clinic", clinician_id="physio-1")
            for c in clients
        ]  # fmt: skip
    services.start("gatekeeper", "nterm-gk")
    publish(server, events)
    stream = evaluated_stream(0)
    wait_for(lambda: drained(server, INBOUND, GATEKEEPER_GROUP), timeout=180, every=0.2)
    decisions = server.xlen(stream)
    first = services.start("notifier", "nterm-1")
    wait_for(lambda: group_info(server, stream, NOTIFIER_GROUP)["read"] >= decisions // 4,
             timeout=60, every=0.01)  # fmt: skip

    seconds, code = sigterm_and_time(first)

    assert group_info(server, stream, NOTIFIER_GROUP)["read"] < decisions  # mid-run
    assert code == 0
    print(f"notifier exited {seconds:.2f}s after SIGTERM under load")
    assert seconds < EXIT_WITHIN_S, f"notifier took {seconds:.1f}s to exit after SIGTERM"
    services.start("notifier", "nterm-2")
    wait_for(lambda: drained(server, stream, NOTIFIER_GROUP), timeout=180, every=0.2)
    wanted = {
        json.loads(fields[b"event"])["decision_id"]
        for _, fields in server.xrange(stream)
        if json.loads(fields[b"event"])["outcome"] != "held"
    }
    assert len(wanted) > 100

    def receipted() -> set[str]:
        return {
            json.loads(f[b"event"])["decision_id"] for _, f in server.xrange(receipts_stream(0))
        }

    wait_for(lambda: wanted <= receipted(), timeout=120, every=0.5)
    messages = Counter(
        json.loads(fields[b"message"])["message_id"]
        for _, fields in server.xrange(client_messages_stream(0))
    )
    assert messages
    assert max(messages.values()) == 1  # none sent twice
