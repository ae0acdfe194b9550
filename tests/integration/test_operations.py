"""What an operator sees of running services (issue 8): readiness that follows
Redis and the subscribers, and /metrics that count a real flow end to end.

Each test runs its own Redis (the embedded server), never the shared one: they
stop it, destroy consumer groups, or need counters no other test moved."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aredis

from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_stream,
)
from rehabgate.services.cli.scrape import scrape, totals
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.lifecycle import ConsumerGroupLost
from rehabgate.services.common.redis_server import EmbeddedRedis, free_port
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.app import create_app as gatekeeper_app
from tests.events import checkin, enrolment, session, unique_client
from tests.waiting import died, wait_for, wait_for_async

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DASHBOARD = Path(__file__).resolve().parents[2] / "ops/grafana/dashboards/rehabgate.json"


def health(port: int, path: str) -> tuple[int, dict[str, Any]] | None:
    try:
        reply = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.TransportError:
        return None
    return reply.status_code, reply.json()


class Running:
    """Both services on a Redis of the test's own, each on a free HTTP port."""

    def __init__(self, server: EmbeddedRedis, logs: Path) -> None:
        self.ports = {"gatekeeper": free_port(), "notifier": free_port()}
        env = {"REHABGATE_HTTP_PORT": str(self.ports["gatekeeper"]),
               "REHABGATE_NOTIFIER_HTTP_PORT": str(self.ports["notifier"]),
               "REHABGATE_READY_TIMEOUT_S": "0.5", "REHABGATE_LOG_JSON": "true"}  # fmt: skip
        self.stack = Stack(server.url, None, logs, {"gatekeeper": env, "notifier": env})

    def ready(self, service: str) -> tuple[int, dict[str, Any]] | None:
        return health(self.ports[service], "/health/ready")

    def metrics(self, service: str) -> list[Any]:
        return scrape(f"http://127.0.0.1:{self.ports[service]}/metrics")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Running, EmbeddedRedis]]:
    server = EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=True).start()
    services = Running(server, tmp_path / "logs")
    try:
        with services.stack:
            for service in ("gatekeeper", "notifier"):
                wait_for(lambda s=service: services.ready(s) == (200, {"ready": True}),
                         what=f"the {service} ready")  # fmt: skip
            yield services, server
    finally:
        server.stop()


def test_metrics_count_a_real_flow(running: tuple[Running, EmbeddedRedis]) -> None:
    services, server = running
    client = unique_client("ops")
    r = redis.Redis.from_url(server.url)
    for event in (enrolment(client), session(client, 1), checkin(client, 2)):
        r.xadd(INBOUND, {"event": json.dumps(event)})
    r.xadd(INBOUND, {"event": "{not json"})

    def settled() -> tuple[list[Any], list[Any]] | None:
        """Both scrapes once the notifier has read and acknowledged every decision."""
        gatekeeper, notifier = services.metrics("gatekeeper"), services.metrics("notifier")
        backlog = [totals(notifier, f"rehabgate_stream_{gauge}") for gauge in ("lag", "pending")]
        decided = sum(totals(gatekeeper, "rehabgate_decisions_total").values())
        return (gatekeeper, notifier) if decided == 3 and backlog == [{"": 0}] * 2 else None

    gatekeeper, notifier = wait_for(settled, what="every decision counted and handled")
    assert r.xlen(evaluated_stream(0)) == 3
    decisions = totals(gatekeeper, "rehabgate_decisions_total", "outcome")
    assert decisions["unlocked"] == 1  # the enrolment's welcome
    deliveries = totals(notifier, "rehabgate_deliveries_total", "channel", "result")
    assert deliveries["stream/delivered"] == r.xlen(client_messages_stream(0)) >= 1
    assert totals(gatekeeper, "rehabgate_events_total", "fate") == {
        "applied": 3, "dead_lettered": 1
    }  # fmt: skip
    assert totals(gatekeeper, "rehabgate_dead_letters_total", "service", "reason") == {
        "gatekeeper/malformed": 1  # the reason as logs show it: its leading lowercase words
    }
    handled = totals(gatekeeper, "faststream_received_processed_messages_total", "app_name")
    assert handled["gatekeeper"] >= 1
    assert totals(gatekeeper, "rehabgate_stream_pending", "stream", "group") == {
        f"{INBOUND}/{GATEKEEPER_GROUP}": 0
    }
    lag = totals(notifier, "rehabgate_stream_lag", "stream", "group")
    assert lag == {f"{evaluated_stream(0)}/{NOTIFIER_GROUP}": 0}

    # Every metric the Grafana dashboard asks for is one these services expose.
    exposed = {s.name for s in gatekeeper + notifier}
    expressions = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"]
                   for t in p.get("targets", [])]  # fmt: skip
    wanted = {m for e in expressions for m in re.findall(r"\b(?:rehabgate|faststream)_\w+", e)}
    assert wanted
    assert wanted <= exposed, wanted - exposed


def test_not_ready_while_redis_is_away_and_ready_again_after(
    running: tuple[Running, EmbeddedRedis],
) -> None:
    services, server = running
    server.stop()
    for service in ("gatekeeper", "notifier"):
        answer = wait_for(lambda s=service: (a := services.ready(s)) and a[0] == 503 and a,
                          what=f"the {service} not ready")  # fmt: skip
        assert answer == (503, {"ready": False, "failed": ["redis unreachable"]})
        assert health(services.ports[service], "/health/live") == (200, {"live": True})
    assert not died(services.stack)()

    # The same server back (its AOF keeps the consumer groups): ready again.
    server.start()
    for service in ("gatekeeper", "notifier"):
        wait_for(lambda s=service: services.ready(s) == (200, {"ready": True}),
                 what=f"the {service} ready again")  # fmt: skip


async def test_not_ready_once_a_subscriber_stopped(tmp_path: Path) -> None:
    """A lost consumer group stops its subscribers; the process then exits (a
    supervisor restarts it), so this runs the app in-process to see the moment
    between: alive, not ready, naming the stopped subscribers."""
    with EmbeddedRedis(data_dir=tmp_path, appendonly=False) as server:
        app = gatekeeper_app(Settings(redis_url=server.url, consumer="lost"))
        r = aredis.Redis.from_url(server.url)
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gatekeeper"
        )
        seen: list[httpx.Response] = []

        async def ready_until(status: int) -> None:
            async def answered() -> bool:
                seen.append(await http.get("/health/ready"))
                return seen[-1].status_code == status

            await wait_for_async(answered, what=f"/health/ready to answer {status}")

        async def lose_the_group() -> None:
            async with app.start_lifespan_context(), http:
                await ready_until(200)  # start-up takes a moment: 503 until it is done
                ready = seen[-1]
                await r.xgroup_destroy(INBOUND, GATEKEEPER_GROUP)
                await ready_until(503)
                seen.extend([ready, await http.get("/health/live")])

        with pytest.raises(ConsumerGroupLost):  # then the process exits non-zero
            await lose_the_group()
        *_, not_ready, ready, live = seen
        assert ready.status_code == 200
        assert not_ready.status_code == 503
        body = not_ready.json()
        assert body["ready"] is False
        # The main subscriber, the claimer, or both, whichever read first after the loss.
        stopped = {f"subscriber stopped: {INBOUND} ({c})" for c in ("lost", "lost-claimer")}
        assert body["failed"]
        assert set(body["failed"]) <= stopped
        assert live.status_code == 200
        await r.aclose()


def test_demo_prints_non_zero_decision_and_delivery_counters(tmp_path: Path) -> None:
    """Issue 8's "done when": /metrics after `make demo` (which runs `rehabgate demo`)
    shows non-zero decision and delivery counters."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # its own Redis
    done = subprocess.run(
        [sys.executable, "-m", "rehabgate.services.cli.main", "demo"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    decisions = re.search(r"^/metrics gatekeeper rehabgate_decisions_total: (.+)$",
                          done.stdout, re.M)  # fmt: skip
    deliveries = re.search(r"^/metrics notifier rehabgate_deliveries_total: (.+)$",
                           done.stdout, re.M)  # fmt: skip
    assert decisions, done.stdout[-2000:]
    assert re.search(r"unlocked [1-9]", decisions[1])
    assert deliveries
    assert re.search(r"stream/delivered [1-9]", deliveries[1])
