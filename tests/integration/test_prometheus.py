"""The compose profile's Prometheus configuration and the Grafana dashboard's
queries, checked by a real Prometheus (Debian's `prometheus` package, which
`.ci/run` installs): `promtool` accepts the shipped configuration, and a
Prometheus scraping the running services answers every dashboard query, with
decisions and deliveries counted. (compose itself cannot run here: no Docker
engine; Grafana is not packaged for Debian.)

Under CI=true a missing Prometheus fails these tests; elsewhere it skips them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from rehabgate.schemas.streams import INBOUND
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.redis_server import EmbeddedRedis, free_port
from tests.events import checkin, enrolment, session, unique_client
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OPS = Path(__file__).resolve().parents[2] / "ops"
SHIPPED_CONFIG = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "dashboards" / "rehabgate.json"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing under CI=true (Debian package prometheus)")
        pytest.skip(f"{name} not installed (Debian package prometheus)")
    return found


def test_promtool_accepts_the_shipped_configuration() -> None:
    checked = subprocess.run(
        [_binary("promtool"), "check", "config", str(SHIPPED_CONFIG)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=30).json()
    assert reply["status"] == "success", (expr, reply)
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


@pytest.fixture
def prometheus_scraping_services(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Both services on a Redis of their own, and a Prometheus scraping them every
    second with the shipped scrape jobs (targets moved to this host's ports):
    (Prometheus URL, Redis URL)."""
    binary = _binary("prometheus")
    server = EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=False).start()
    ports = {"gatekeeper": free_port(), "notifier": free_port(), "ingest": free_port()}
    env = {"REHABGATE_HTTP_PORT": str(ports["gatekeeper"]),
           "REHABGATE_NOTIFIER_HTTP_PORT": str(ports["notifier"]),
           "REHABGATE_INGEST_HTTP_PORT": str(ports["ingest"])}  # fmt: skip
    config = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web = free_port()
    try:
        services = {"gatekeeper": env, "notifier": env, "ingest": env}
        with Stack(server.url, None, tmp_path / "logs", services):
            prometheus = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{web}"],
                stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
            )  # fmt: skip
            try:
                yield f"http://127.0.0.1:{web}", server.url
            finally:
                prometheus.terminate()
                prometheus.wait(timeout=60)
    finally:
        server.stop()


def test_a_real_prometheus_scrapes_the_services_and_answers_every_dashboard_query(
    prometheus_scraping_services: tuple[str, str],
) -> None:
    base, redis_url = prometheus_scraping_services
    r = redis.Redis.from_url(redis_url)
    client = unique_client("prom")
    for event in (enrolment(client), session(client, 1), checkin(client, 2)):
        r.xadd(INBOUND, {"event": json.dumps(event)})
    r.xadd(INBOUND, {"event": "{not json"})  # a dead letter, for its panel

    def targets_up() -> bool:
        reply = httpx.get(f"{base}/api/v1/targets", timeout=30).json()
        active = reply["data"]["activeTargets"]
        return len(active) == 3 and all(t["health"] == "up" for t in active)

    wait_for(lambda: (_reachable(base) and targets_up()) or None, timeout=120,
             what="Prometheus up with all three targets")  # fmt: skip
    decided = wait_for(
        lambda: _query(base, "sum(rehabgate_decisions_total)") or None, what="the decisions"
    )
    assert float(decided[0]["value"][1]) == 3
    delivered = wait_for(
        lambda: _query(base, 'sum(rehabgate_deliveries_total{result="delivered"})') or None,
        what="the deliveries",
    )
    assert float(delivered[0]["value"][1]) >= 1

    # Each panel's query, as Grafana would send it, parses and finds series.
    expressions = [t["expr"].replace("$__rate_interval", "1m")
                   for p in json.loads(DASHBOARD.read_text())["panels"]
                   for t in p.get("targets", [])]  # fmt: skip
    assert len(expressions) >= 8
    wait_for(
        lambda: not [e for e in expressions if not _query(base, e)],
        every=0.5,
        what="a series for every panel's query",
    )


def _reachable(base: str) -> bool:
    try:
        return httpx.get(f"{base}/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
