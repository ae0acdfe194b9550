"""Both services serve /health/live, /health/ready and /metrics (issue 8), checked
through their ASGI apps without a server: an app that has not started, against a
Redis that is not there, is alive but names every reason it is not ready."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rehabgate.schemas.streams import INBOUND, evaluated_stream
from rehabgate.services.common.http_serving import ServiceAsgi
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.app import create_app as gatekeeper_app
from rehabgate.services.notifier.app import create_app as notifier_app

NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
APPS: dict[str, Callable[[Settings], ServiceAsgi]] = {
    "gatekeeper": gatekeeper_app,
    "notifier": notifier_app,
}


def an_app(service: str, **extra: Any) -> ServiceAsgi:
    settings = Settings(redis_url=NOWHERE, consumer="test-consumer", **extra)
    return APPS[service](settings)


async def get(app: ServiceAsgi, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        return await client.get(path)


def test_the_notifier_serves_on_its_own_port() -> None:
    app = an_app("notifier", http_port=9180, notifier_http_port=9181)
    assert {path for path, _ in app.routes} == {"/health/live", "/health/ready", "/metrics"}
    assert app.http_port == 9181
    assert an_app("gatekeeper", http_port=9180, notifier_http_port=9181).http_port == 9180


@pytest.mark.parametrize("service", ["gatekeeper", "notifier"])
async def test_alive_but_not_ready_names_what_failed(service: str) -> None:
    app = an_app(service)
    live = await get(app, "/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True})

    ready = await get(app, "/health/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False
    stream = INBOUND if service == "gatekeeper" else evaluated_stream(0)
    assert set(body["failed"]) == {
        "start-up not finished",
        "redis unreachable",
        f"subscriber stopped: {stream} (test-consumer)",
        f"subscriber stopped: {stream} (test-consumer-claimer)",
    }
    assert ready.headers["cache-control"] == "no-store"


async def test_metrics_render_without_redis_and_each_app_has_its_own_registry() -> None:
    first, second = an_app("gatekeeper"), an_app("gatekeeper")  # no duplicate-metric error
    reply = await get(first, "/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(reply.text)}
    assert {"rehabgate_decisions", "rehabgate_events", "rehabgate_dead_letters"} <= set(families)
    assert "faststream_received_processed_messages_duration_seconds" in families
    # Every outcome is exposed from the start (at 0), so rate() has a series to work on.
    outcomes = {s.labels["outcome"] for s in families["rehabgate_decisions"].samples
                if s.name == "rehabgate_decisions_total"}  # fmt: skip
    assert outcomes == {"held", "unlocked", "regressed", "flagged", "completed"}
    # Redis is away: the stream gauges are absent rather than stale or made up.
    assert not families["rehabgate_stream_pending"].samples
    assert not families["rehabgate_stream_lag"].samples
    assert (await get(second, "/metrics")).status_code == 200
