"""`rehabgate publish` reports every fate truthfully, and `rehabgate up` owns its
`.rehabgate/redis.url`: written once Redis answers, never overwritten by a second
`up`, removed on exit; a dead Redis stops it with a line saying so."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from rehabgate.schemas.streams import INBOUND
from rehabgate.services.cli import errors
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.redis_server import free_port
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REHABGATE = str(Path(sys.executable).with_name("rehabgate"))


def event(client: str, event_type: str, **body: Any) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": 1,
            "occurred_at": "2026-11-02T08:00:00+00:00", "clinic_id": "clinic-a",
            "client_id": client, **body}  # fmt: skip


def enrolment(client: str) -> dict[str, Any]:
    return event(client, "client.enrolled", protocol="achilles-tendinopathy@1",
                 start_date="2026-11-02")  # fmt: skip


def session(client: str, **extra: Any) -> dict[str, Any]:
    return {**event(client, "session.logged", session_id=f"s-{uuid.uuid4().hex[:6]}",
                    pain_during=2, completed=True), **extra}  # fmt: skip


def publish(redis_url: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REHABGATE, "publish", str(path), "--wait", "90", *extra],
        env={**os.environ, "REDIS_URL": redis_url}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def services(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    http = {"REHABGATE_HTTP_PORT": str(free_port()),
            "REHABGATE_NOTIFIER_HTTP_PORT": str(free_port())}  # fmt: skip
    logs = tmp_path_factory.mktemp("publish-logs")
    with Stack(redis_url, None, logs, {"gatekeeper": http, "notifier": http}) as stack:
        yield stack


def fates(out: str) -> dict[str, str]:
    """entry id -> its fate line's first word."""
    found = {}
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        entry = rest.split(":", 1)[0]
        if kind != "published":
            found[entry] = kind
    return found


def published(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("published ")]


def test_publish_reports_decisions_duplicates_and_applied_events(
    services: Stack, redis_url: str, tmp_path: Path
) -> None:
    client = f"c-{uuid.uuid4().hex[:8]}"
    first = session(client)
    contact = event(client, "client.contact.updated", channel="stream", address="handle-1",
                    locale="en")  # fmt: skip
    file = tmp_path / "events.jsonl"
    file.write_text("\n".join(json.dumps(e) for e in [enrolment(client), first, first, contact]))

    done = publish(redis_url, file)

    assert done.returncode == 0, done.stdout + done.stderr
    entries = published(done.stdout)
    assert [fates(done.stdout)[e] for e in entries] == [
        "decided", "decided", "duplicate", "applied"
    ], done.stdout  # fmt: skip
    assert f"duplicate of {entries[1]} (same event_id, earlier in this file)" in done.stdout
    assert "client.contact.updated (this event type has no decision)" in done.stdout

    again = publish(redis_url, file)  # every event id is applied already

    assert again.returncode == 0, again.stdout + again.stderr
    assert set(fates(again.stdout).values()) == {"duplicate"}, again.stdout
    assert again.stdout.count("duplicate of an event already applied") == 4


def test_publish_reports_a_deferred_event_and_a_dead_letter(
    services: Stack, redis_url: str, tmp_path: Path
) -> None:
    stranger = f"c-{uuid.uuid4().hex[:8]}"  # never enrolled
    client = f"c-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "events.json"
    file.write_text(json.dumps([session(stranger), enrolment(client), enrolment(client) | {
        "event_id": str(uuid.uuid4())}]))  # fmt: skip

    done = publish(redis_url, file)

    assert done.returncode == 1, done.stdout + done.stderr  # not everything settled well
    entries = published(done.stdout)
    assert [fates(done.stdout)[e] for e in entries] == ["deferred", "decided", "DEAD-LETTERED"]
    assert f"deferred {entries[0]}: waiting for the client's enrolment" in done.stdout
    assert f"DEAD-LETTERED {entries[2]}: client already enrolled" in done.stdout


def test_publish_checks_events_locally_and_sends_nothing_invalid(
    redis_url: str, tmp_path: Path
) -> None:
    client = f"c-{uuid.uuid4().hex[:8]}"
    file = tmp_path / "events.json"
    file.write_text(json.dumps([enrolment(client), session(client, pain_during=12)]))
    r = redis.Redis.from_url(redis_url)
    before = r.xlen(INBOUND)

    done = publish(redis_url, file)

    assert done.returncode == errors.BAD_FILE
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"rehabgate publish: {file}: 1 of 2 events invalid, nothing sent; item 2: "
        "pain_during: Input should be less than or equal to 10"
    ]
    assert r.xlen(INBOUND) == before
    r.close()


def start_up(cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"REHABGATE_HTTP_PORT": str(free_port()),
            "REHABGATE_NOTIFIER_HTTP_PORT": str(free_port())}  # fmt: skip
    return subprocess.Popen([REHABGATE, "up"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_a_second_up_refuses_and_the_url_file_lives_as_long_as_the_first(tmp_path: Path) -> None:
    url_file = tmp_path / ".rehabgate" / "redis.url"
    first = start_up(tmp_path)
    try:
        url = wait_for(lambda: url_file.is_file() and url_file.read_text(), timeout=120)
        assert answers(url)  # written only once the server answers
        running = json.loads((tmp_path / ".rehabgate" / "up.json").read_text())
        assert running["redis_url"] == url

        second = start_up(tmp_path)
        out, err = second.communicate(timeout=120)

        assert second.returncode == errors.ALREADY_RUNNING, out + err
        assert err.splitlines() == [
            f"rehabgate up: already running in this directory: REDIS_URL={url}"
        ]
        assert "Traceback" not in out + err
        assert url_file.read_text() == url
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert not url_file.exists()
    assert not (tmp_path / ".rehabgate" / "up.json").exists()


def test_up_says_so_and_exits_1_when_its_redis_dies(tmp_path: Path) -> None:
    url_file = tmp_path / ".rehabgate" / "redis.url"
    up = start_up(tmp_path)
    try:
        url = wait_for(lambda: url_file.is_file() and url_file.read_text(), timeout=120)
        client = redis.Redis.from_url(url)
        with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it goes
            client.shutdown(nosave=True)
        out, err = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 1, out + err
    assert f"rehabgate up: Redis at {url} stopped answering; stopping" in err.splitlines()
    assert "Traceback" not in out + err
    assert not url_file.exists()
