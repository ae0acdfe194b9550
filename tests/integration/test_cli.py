"""The `rehabgate` commands a new user runs, as subprocesses against a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rehabgate.services.cli.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REHABGATE = [sys.executable, "-m", "rehabgate.services.cli.main"]


def run(redis_url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REHABGATE, *args], env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True, text=True, timeout=180, cwd=cwd,
    )  # fmt: skip


def test_demo_prints_an_unlock_and_a_step_back_and_exits_0(redis_url: str) -> None:
    result = run(redis_url, "demo")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "(unlocked) ──\n   You've unlocked Stage 2: start strengthening" in out
    assert "(regressed) ──\n   Let's take a step back" in out
    assert "(flagged) ──\n   Your physio will be in touch" in out
    assert "0 events dead-lettered" in out
    for client in ("steady", "flare", "swelling"):
        assert f"\n{client}-" in out  # the per-client table


def test_publish_reports_each_events_fate(redis_url: str, tmp_path: Path) -> None:
    client = f"c-{uuid.uuid4().hex[:8]}"
    events = [
        {"event_id": str(uuid.uuid4()), "event_type": "client.enrolled",
         "occurred_at": "2026-11-02T08:00:00+00:00", "clinic_id": "clinic-a",
         "client_id": client, "protocol": "achilles-tendinopathy@1", "start_date": "2026-11-02"},
        {"event_id": str(uuid.uuid4()), "event_type": "session.logged",
         "occurred_at": "2026-11-02T18:00:00+00:00", "clinic_id": "clinic-a",
         "client_id": client, "session_id": "s1", "pain_during": 12, "completed": True},
    ]  # fmt: skip
    file = tmp_path / "events.json"
    file.write_text(json.dumps(events))

    with Stack(redis_url, data_dir=None, log_dir=tmp_path / "logs"):
        # --no-check: send the invalid event too, to see its dead letter
        result = run(redis_url, "publish", str(file), "--wait", "60", "--no-check")

    assert result.returncode == 1, result.stdout  # one event was refused
    assert "unlocked (stage start-loading)" in result.stdout
    assert "DEAD-LETTERED" in result.stdout
    assert "pain_during: Input should be less than or equal to 10" in result.stdout


def test_protocol_check_names_the_bad_file(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "broken@1.yaml").write_text("id: broken\nversion: 1\n")
    result = run(redis_url, "protocol", "check", str(tmp_path))
    assert result.returncode == 1
    assert "broken@1.yaml" in result.stderr
    assert "Field required" in result.stderr


def demo_history(tmp_path: Path, client: str = "flare") -> Path:
    from rehabgate.services.cli.demo_clinic import demo_events

    events = [e for e in demo_events("t") if e["client_id"] == f"{client}-t"]
    path = tmp_path / f"{client}.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events))
    return path


def test_protocol_simulate_prints_every_decision_with_its_criteria(
    redis_url: str, tmp_path: Path
) -> None:
    history = demo_history(tmp_path)

    text = run(
        redis_url, "protocol", "simulate", "achilles-tendinopathy@1", "--events", str(history)
    )
    as_json = run(redis_url, "protocol", "simulate", "achilles-tendinopathy@1",
                  "--events", str(history), "--json")  # fmt: skip

    assert text.returncode == 0, text.stdout
    assert "UNLOCKED  start-loading -> start-strengthening" in text.stdout
    assert "REGRESSED start-strengthening -> start-loading" in text.stdout
    assert "HIT  step_back pain-over-5-twice" in text.stdout
    decisions = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [d["outcome"] for d in decisions].count("regressed") == 1
    assert all(d["criteria"] for d in decisions[1:])


def test_replay_shows_what_another_protocol_version_would_have_decided(
    redis_url: str, tmp_path: Path
) -> None:
    import asyncio

    import redis.asyncio as aredis

    from rehabgate.services.gatekeeper.process import Entry, process_batch
    from rehabgate.services.gatekeeper.protocol_files import SHIPPED_DIR, load_protocols
    from rehabgate.services.gatekeeper.store import RedisClientStore

    client = f"replay-{uuid.uuid4().hex[:6]}"
    lines = demo_history(tmp_path, "steady").read_text().replace("steady-t", client).splitlines()

    async def store_history() -> None:
        r = aredis.Redis.from_url(redis_url)
        entries = [Entry(f"{i + 1}-0", {b"event": line.encode()}) for i, line in enumerate(lines)]
        await process_batch(entries, RedisClientStore(r, 1), load_protocols())
        await r.aclose()

    asyncio.run(store_history())
    clinic = tmp_path / "clinic-protocols"
    clinic.mkdir()
    v2 = (SHIPPED_DIR / "achilles-tendinopathy@1.yaml").read_text()
    # version 3: the shipped protocols include a version 2
    v2 = v2.replace("version: 1", "version: 3").replace("min_days: 14", "min_days: 10")
    (clinic / "achilles-tendinopathy@3.yaml").write_text(v2)

    result = subprocess.run(
        [*REHABGATE, "replay", client, "--protocol", "achilles-tendinopathy@3"],
        env={**os.environ, "REDIS_URL": redis_url, "REHABGATE_PROTOCOL_DIRS": json.dumps([str(clinic)])},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "differ" in result.stdout
    assert "held (start-loading) -> unlocked (start-strengthening)" in result.stdout


def test_up_starts_an_embedded_redis_and_both_services_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    import signal
    import time

    from rehabgate.services.cli.health import check

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    up = subprocess.Popen([*REHABGATE, "up"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        url_file = tmp_path / ".rehabgate" / "redis.url"
        deadline = time.monotonic() + 30
        while not url_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        url = url_file.read_text()
        healthy: dict[str, bool] = {}
        while not all(healthy.values()) or not healthy:
            assert time.monotonic() < deadline, healthy
            healthy = {s: check(url, s)[0] for s in ("gatekeeper", "notifier")}
            time.sleep(0.2)
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=60)
    assert up.returncode == 0
    assert "REDIS_URL=redis://127.0.0.1:" in out
    assert (tmp_path / ".rehabgate" / "redis" / "appendonlydir").is_dir()  # AOF on
