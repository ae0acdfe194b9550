"""Ingest-only Redis users (issue 18): with `acl generate --ingest-only` no clinic
user exists, so no clinic credential reaches Redis; the ingest writes the clinics'
streams under its own user, which may add and never trim or delete."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from rehabgate.services.common.acl import ADMIN, INGEST, clinic_user, generate
from rehabgate.services.common.redis_server import EmbeddedRedis, free_port
from tests.events import enrolment, event, session, unique_client
from tests.ingest_server import base_env, running
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLINICS = ["clinic-a", "clinic-b"]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedRedis, dict[str, str]]]:
    directory: Path = tmp_path_factory.mktemp("ingest-acl")
    # The passwords clinics would have had without --ingest-only: given, so we know them.
    with_clinics = generate(CLINICS, {})
    given = {user: pw for user, pw in with_clinics.passwords.items()}
    acl = generate(CLINICS, given, ingest_only=True)
    (directory / "users.acl").write_text(acl.text)
    with EmbeddedRedis(directory / "data", appendonly=False, aclfile=directory / "users.acl") as s:
        yield s, given


def test_no_clinic_credential_reaches_redis(server: tuple[EmbeddedRedis, dict[str, str]]) -> None:
    embedded, passwords = server
    for clinic in CLINICS:
        client = redis.Redis.from_url(
            embedded.url_for(clinic_user(clinic), passwords[clinic_user(clinic)])
        )
        with pytest.raises(redis.AuthenticationError):
            client.ping()
        client.close()
    anonymous = redis.Redis.from_url(embedded.url)
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        anonymous.xadd("rehabgate:inbound:clinic-a", {"event": "{}"})
    anonymous.close()


def test_the_ingest_adds_but_cannot_trim_or_delete(
    server: tuple[EmbeddedRedis, dict[str, str]],
) -> None:
    embedded, passwords = server
    ingest = redis.Redis.from_url(embedded.url_for(INGEST, passwords[INGEST]))
    stream = "rehabgate:inbound:clinic-a"
    for attempt in (
        lambda: ingest.xtrim(stream, maxlen=0),
        lambda: ingest.xdel(stream, "0-1"),
        lambda: ingest.delete(stream),
        lambda: ingest.xadd("rehabgate:inbound:dead-letter", {"reason": "x"}),
        lambda: ingest.hset("rehabgate:ingest:api-keys", "k", "v"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    ingest.close()


def test_the_ingest_runs_under_its_own_user_without_a_refusal(
    server: tuple[EmbeddedRedis, dict[str, str]],
) -> None:
    embedded, passwords = server
    admin = redis.Redis.from_url(embedded.url_for(ADMIN, passwords[ADMIN]))
    admin.acl_log_reset()
    # Issue a key as admin (the CLI's user), then post as the ingest user.
    issued = subprocess.run(
        [sys.executable, "-m", "rehabgate.services.cli.main", "ingest-key", "issue", "clinic-a"],
        env=base_env(embedded.url_for(ADMIN, passwords[ADMIN]),
                     REHABGATE_CLINICS=json.dumps({key: {} for key in CLINICS})),
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    env = {"REHABGATE_CLINICS": json.dumps({key: {} for key in CLINICS})}
    ingest_url = embedded.url_for(INGEST, passwords[INGEST])
    with running(ingest_url, "ingest", free_port(), env) as url:
        client = unique_client()
        enrol = {**enrolment(client), "clinic_id": "clinic-a"}
        first = {**session(client, 1), "clinic_id": "clinic-a"}
        early = {**session(unique_client(), 1), "clinic_id": "clinic-a"}  # not enrolled
        late = unique_client()
        late_enrol = {
            **event(
                "client.enrolled",
                late,
                hours=24 * 30,
                start_date="2026-07-01",
                protocol="achilles-tendinopathy@1",
            ),
            "clinic_id": "clinic-a",
        }
        before = {
            **event("checkin.logged", late, morning_pain=1, morning_stiffness=1, swelling=False),
            "clinic_id": "clinic-a",
        }  # before the enrolment
        headers = {"Authorization": f"Bearer {issued}"}
        answer = httpx.post(f"{url}/v1/events", json=[enrol, first, early, late_enrol, before],
                            headers=headers, timeout=30)  # fmt: skip
        assert answer.status_code == 202, answer.text

        def fate(event: dict[str, Any]) -> str:
            found = httpx.get(f"{url}/v1/events/{event['event_id']}", headers=headers, timeout=30)
            return str(found.json()["fate"])

        assert fate(first) == "pending"  # no gatekeeper yet
        # Now the gatekeeper, as its own user: every fate is read as the ingest user.
        gatekeeper_url = embedded.url_for("gatekeeper", passwords["gatekeeper"])
        with running(gatekeeper_url, "gatekeeper", free_port(), env):
            wait_for(lambda: fate(first) == "applied", what="applied")
            wait_for(lambda: fate(early) == "deferred", what="deferred")
            wait_for(lambda: fate(before) == "dead_lettered", what="dead-lettered")
            decision = httpx.get(f"{url}/v1/events/{first['event_id']}", headers=headers,
                                 timeout=30).json()["decision"]  # fmt: skip
            assert decision["outcome"]
    assert admin.xlen("rehabgate:inbound:clinic-a") == 5
    assert admin.acl_log() == []
    admin.close()
