"""SIGTERM during a run loses nothing: the gatekeeper stops within its graceful
timeout, and a new one applies every event exactly once (in-flight batches are
either committed or left pending and reclaimed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from rehabgate.schemas.streams import GATEKEEPER_GROUP, INBOUND
from rehabgate.services.common.keys import ClientKeys
from tests.events import enrolment, session, unique_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def gatekeeper(url: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "rehabgate.services.cli.main", "gatekeeper"],
        env={**os.environ, "REDIS_URL": url, "REHABGATE_CONSUMER": name,
             "REHABGATE_CLAIM_IDLE_MS": "500", "REHABGATE_HTTP_PORT": "0"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_sigterm_mid_run_loses_nothing_and_applies_nothing_twice(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    clients = [unique_client("term") for _ in range(80)]
    events = [enrolment(c) for c in clients]
    events += [session(c, day) for day in range(50) for c in clients]
    before = _read(sync_redis)  # the stream is shared with other tests
    first = gatekeeper(redis_url, f"term-{clients[0]}")
    pipe = sync_redis.pipeline(transaction=False)
    for event in events:
        pipe.xadd(INBOUND, {"event": json.dumps(event)})
    pipe.execute()
    deadline = time.monotonic() + 60
    while _read(sync_redis) - before < 300:  # stop it mid-run, once well under way
        assert time.monotonic() < deadline
        time.sleep(0.01)

    first.send_signal(signal.SIGTERM)
    assert _read(sync_redis) - before < len(events)  # it really was mid-run
    assert first.wait(timeout=30) == 0
    second = gatekeeper(redis_url, f"term-{clients[1]}")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            group = {g["name"].decode(): g for g in sync_redis.xinfo_groups(INBOUND)}
            state = group[GATEKEEPER_GROUP]
            if state["lag"] == 0 and state["pending"] == 0:
                break
            time.sleep(0.2)
    finally:
        second.terminate()
        second.wait(timeout=30)

    for client in clients:
        keys = ClientKeys.of(client, 1)
        assert sync_redis.scard(keys.processed) == 51, client  # every event, once
        assert sync_redis.xlen(keys.audit) == 51, client  # one audit entry each


def _read(client: redis.Redis) -> int:
    """Entries the gatekeeper group has read from the inbound stream so far."""
    try:
        groups = {g["name"].decode(): g for g in client.xinfo_groups(INBOUND)}
    except redis.ResponseError:  # no stream yet
        return 0
    group = groups.get(GATEKEEPER_GROUP)
    return int(group["entries-read"] or 0) if group else 0
