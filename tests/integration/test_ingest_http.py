"""The HTTPS ingest on a real server (issue 18): a real `rehabgate ingest` and a real
gatekeeper as subprocesses on a private Redis, spoken to over HTTP.

Authentication failures are refused alike; another clinic's event ids are not
visible; size, batch and rate limits hold; re-posts are idempotent; strict-schema
refusals name each event and why; and every fate is shown through GET."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from rehabgate.schemas.signing import generate_key, sign
from rehabgate.services.common.redis_server import EmbeddedRedis, free_port
from tests.events import enrolment, event, session, unique_client
from tests.ingest_server import base_env, issue_key, running, stack
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIGNING_KEY = generate_key()
#: clinic-p is served by the ingest but not read by the gatekeeper: its events stay pending.
INGEST_CLINICS = {
    "clinic-a": {},
    "clinic-b": {"require_signature": True, "keys": [SIGNING_KEY]},
    "clinic-p": {},
}
GATEKEEPER_CLINICS = {"clinic-a": {}, "clinic-b": INGEST_CLINICS["clinic-b"]}
MAX_BATCH = 20
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with EmbeddedRedis(appendonly=False) as embedded:
        yield embedded.url


@pytest.fixture(scope="module")
def ingest(server: str) -> Iterator[str]:
    with stack(
        server, INGEST_CLINICS, GATEKEEPER_CLINICS,
        REHABGATE_INGEST_MAX_BATCH=str(MAX_BATCH), REHABGATE_INGEST_MAX_BODY_BYTES=str(MAX_BODY),
    ) as (url, _):  # fmt: skip
        yield url


@pytest.fixture(scope="module")
def keys(server: str) -> dict[str, str]:
    return {clinic: issue_key(server, clinic, INGEST_CLINICS) for clinic in INGEST_CLINICS}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(url: str, key: str, body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/events", json=body, headers=auth(key), timeout=30)


def fate(url: str, key: str, event_id: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/events/{event_id}", headers=auth(key), timeout=30)


def of(clinic: str, e: dict[str, Any]) -> dict[str, Any]:
    return {**e, "clinic_id": clinic}


def settled(url: str, key: str, event_id: str, wanted: str) -> dict[str, Any]:
    def answer() -> dict[str, Any] | None:
        body: dict[str, Any] = fate(url, key, event_id).json()
        return body if body.get("fate") == wanted else None

    return wait_for(answer, what=f"{event_id} {wanted}")


def test_authentication_failures_are_refused_alike(
    ingest: str, keys: dict[str, str], server: str
) -> None:
    good = keys["clinic-a"]
    key_id = good.split("_")[1]
    revoked = issue_key(server, "clinic-a", INGEST_CLINICS)
    subprocess.run(
        [sys.executable, "-m", "rehabgate.services.cli.main", "ingest-key", "revoke",
         revoked.split("_")[1]],
        env=base_env(server), check=True, capture_output=True,
        timeout=60,
    )  # fmt: skip
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": good},  # no scheme
        {"Authorization": f"Basic {good}"},
        {"Authorization": "Bearer rgk_nothing"},
        {"Authorization": f"Bearer rgk_{'0' * 16}_{'A' * 43}"},  # unknown id
        {"Authorization": f"Bearer rgk_{key_id}_{'A' * 43}"},  # right id, wrong secret
        auth(revoked),
    ]
    e = of("clinic-a", enrolment(unique_client()))
    answers = [
        httpx.post(f"{ingest}/v1/events", json=e, headers=h, timeout=30) for h in attempts
    ] + [httpx.get(f"{ingest}/v1/events/{e['event_id']}", headers=h, timeout=30) for h in attempts]
    assert {(r.status_code, r.content, r.headers.get("www-authenticate")) for r in answers} == {
        (401, answers[0].content, 'Bearer realm="rehabgate"')
    }
    assert post(ingest, good, e).status_code == 202  # and the good key works


def test_accepts_with_entry_ids_and_reposts_are_idempotent(
    ingest: str, keys: dict[str, str], server: str
) -> None:
    client = unique_client()
    events = [of("clinic-a", enrolment(client)), of("clinic-a", session(client, 1))]
    first = post(ingest, keys["clinic-a"], events)
    assert first.status_code == 202, first.text
    accepted = first.json()["accepted"]
    assert [a["status"] for a in accepted] == ["accepted", "accepted"]
    assert [a["event_id"] for a in accepted] == [e["event_id"] for e in events]
    again = post(ingest, keys["clinic-a"], events[1])
    assert again.status_code == 202
    assert again.json()["accepted"][0] | {"index": 0} == accepted[1] | {
        "index": 0, "status": "duplicate"
    }  # fmt: skip
    r = redis.Redis.from_url(server)
    entries = r.xrange("rehabgate:inbound:clinic-a")
    assert [i.decode() for i, _ in entries].count(accepted[1]["entry_id"]) == 1
    assert sum(events[1]["event_id"].encode() in f[b"event"] for _, f in entries) == 1
    # The same id with other content: refused, as the gatekeeper would.
    changed = {**events[1], "pain_during": 7}
    refused = post(ingest, keys["clinic-a"], changed)
    assert refused.status_code == 422
    [why] = refused.json()["refused"]
    assert why["event_id"] == events[1]["event_id"]
    assert why["reason"].startswith("event id reused with different content")


def test_strict_schema_refusals_name_each_event_and_write_nothing(
    ingest: str, keys: dict[str, str], server: str
) -> None:
    client = unique_client()
    good = of("clinic-a", enrolment(client))
    wrong_type = of("clinic-a", session(client, 1, pain="3"))
    other_clinic = of("clinic-b", session(client, 2))
    future = of("clinic-a", event("checkin.logged", client, hours=24 * 3650, morning_pain=1,
                                  morning_stiffness=1, swelling=False))  # fmt: skip
    unknown_field = {**of("clinic-a", session(client, 3)), "shoe_size": 44}
    r = redis.Redis.from_url(server)
    before = r.xlen("rehabgate:inbound:clinic-a")
    answer = post(ingest, keys["clinic-a"], [good, wrong_type, other_clinic, future, 7,
                                             unknown_field])  # fmt: skip
    assert answer.status_code == 422
    refused = {item["index"]: item for item in answer.json()["refused"]}
    assert sorted(refused) == [1, 2, 3, 4, 5]
    assert refused[1]["reason"] == (
        "schema violation: session.logged.pain_during: Input should be a valid integer"
    )
    assert refused[1]["event_id"] == wrong_type["event_id"]
    assert refused[2]["reason"].startswith("clinic mismatch: the event names clinic clinic-b")
    assert "after the server's clock" in refused[3]["reason"]
    assert refused[4] == {"index": 4, "event_id": None,
                          "reason": "not an event: expected a JSON object, got int"}  # fmt: skip
    assert "shoe_size" in refused[5]["reason"]
    assert r.xlen("rehabgate:inbound:clinic-a") == before  # nothing written


def test_size_batch_and_body_limits(ingest: str, keys: dict[str, str]) -> None:
    key = keys["clinic-a"]
    too_many = [of("clinic-a", enrolment(unique_client())) for _ in range(MAX_BATCH + 1)]
    answer = post(ingest, key, too_many)
    assert answer.status_code == 413
    assert (
        answer.json()["detail"]
        == f"too many events: {MAX_BATCH + 1}, at most {MAX_BATCH} per request"
    )
    big = httpx.post(f"{ingest}/v1/events", content=b"[" + b" " * MAX_BODY + b"]",
                     headers={**auth(key), "Content-Type": "application/json"}, timeout=30)  # fmt: skip
    assert big.status_code == 413
    assert big.json()["detail"] == f"body over {MAX_BODY} bytes (not parsed)"
    for body, detail in [(b"{not json", "malformed JSON"), (b"[]", "no events"),
                         (b'{"a": 1, "a": 2}', "malformed JSON: duplicate key 'a'"),
                         (b'{"x": NaN}', "malformed JSON")]:  # fmt: skip
        bad = httpx.post(f"{ingest}/v1/events", content=body, headers=auth(key), timeout=30)
        assert bad.status_code == 400, body
        assert bad.json()["detail"].startswith(detail)
    one_big = of("clinic-a", session(unique_client(), 1, notes="x" * 70_000))
    answer = post(ingest, key, one_big)
    assert answer.status_code == 413 or "entry too large" in answer.json()["refused"][0]["reason"]


def test_signed_clinics_need_signatures(ingest: str, keys: dict[str, str]) -> None:
    import time

    e = of("clinic-b", enrolment(unique_client()))
    unsigned = post(ingest, keys["clinic-b"], e)
    assert unsigned.status_code == 422
    assert unsigned.json()["refused"][0]["reason"].startswith("signature missing")
    fields = sign(json.dumps(e), SIGNING_KEY, int(time.time()))
    signed = post(ingest, keys["clinic-b"], [fields])
    assert signed.status_code == 202, signed.text
    forged = {**fields, "signature": "v1,AAAA"}
    assert post(ingest, keys["clinic-b"], forged).status_code in (202, 422)


def test_every_fate_through_get_and_only_for_its_clinic(ingest: str, keys: dict[str, str]) -> None:
    a, b, p = keys["clinic-a"], keys["clinic-b"], keys["clinic-p"]
    client = unique_client()
    enrol, first = of("clinic-a", enrolment(client)), of("clinic-a", session(client, 1))
    assert post(ingest, a, [enrol, first]).status_code == 202
    applied = settled(ingest, a, first["event_id"], "applied")
    assert applied["decision"]["outcome"] in {"held", "unlocked", "regressed", "flagged"}
    uuid.UUID(applied["decision"]["decision_id"])
    contact_less = settled(ingest, a, enrol["event_id"], "applied")
    assert contact_less["entry_id"]
    # Deferred: a session for a client not enrolled yet.
    waiting = of("clinic-a", session(unique_client(), 1))
    assert post(ingest, a, waiting).status_code == 202
    settled(ingest, a, waiting["event_id"], "deferred")
    # Dead-lettered by the gatekeeper (the edge cannot know): before the enrolment.
    late_client = unique_client()
    enrol_late = of("clinic-a", event("client.enrolled", late_client, hours=24 * 30,
                                      protocol="achilles-tendinopathy@1", start_date="2026-07-01"))  # fmt: skip
    too_early = of("clinic-a", event("checkin.logged", late_client, hours=0, morning_pain=1,
                                     morning_stiffness=1, swelling=False))  # fmt: skip
    assert post(ingest, a, [enrol_late, too_early]).status_code == 202
    letter = settled(ingest, a, too_early["event_id"], "dead_lettered")
    assert "before the client's enrolment" in letter["reason"]
    # Pending: clinic-p's stream is not read by this gatekeeper.
    stuck = of("clinic-p", enrolment(unique_client()))
    assert post(ingest, p, stuck).status_code == 202
    assert fate(ingest, p, stuck["event_id"]).json()["fate"] == "pending"
    # Another clinic's id answers like an unknown one.
    unknown = fate(ingest, a, str(uuid.uuid4()))
    foreign = fate(ingest, b, first["event_id"])
    assert (unknown.status_code, foreign.status_code) == (404, 404)
    assert unknown.content == foreign.content
    assert fate(ingest, a, "not-a-uuid").status_code == 404


def test_health_and_metrics(ingest: str) -> None:
    assert httpx.get(f"{ingest}/health/live", timeout=30).json() == {"live": True}
    assert httpx.get(f"{ingest}/health/ready", timeout=30).json() == {"ready": True}
    metrics = httpx.get(f"{ingest}/metrics", timeout=30).text
    assert 'rehabgate_ingest_events_total{result="accepted"}' in metrics
    committed = Path(__file__).resolve().parents[2] / "schemas" / "json" / "ingest-openapi.json"
    served = httpx.get(f"{ingest}/openapi.json", timeout=30).json()
    assert served == json.loads(committed.read_text())


def test_rate_limit_answers_429_with_retry_after(server: str, keys: dict[str, str]) -> None:
    env = {"REHABGATE_CLINICS": json.dumps(INGEST_CLINICS), "REHABGATE_INGEST_RATE_PER_S": "0.1",
           "REHABGATE_INGEST_BURST": "3"}  # fmt: skip
    with running(server, "ingest", free_port(), env) as url:
        key = keys["clinic-p"]
        batch = [of("clinic-p", enrolment(unique_client())) for _ in range(3)]
        assert post(url, key, batch).status_code == 202
        limited = post(url, key, of("clinic-p", enrolment(unique_client())))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        # Another clinic has its own budget.
        assert (
            post(url, keys["clinic-a"], of("clinic-a", enrolment(unique_client()))).status_code
            == 202
        )


def readme_curl_block() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Publishing over HTTPS: the ingest\n", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_curl_examples_run(ingest: str, keys: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_curl_block()],
        env={"PATH": "/usr/bin:/bin", "INGEST_URL": ingest, "API_KEY": keys["clinic-a"]},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    posted, fate_line = (
        json.loads(line) for line in done.stdout.replace("}{", "}\n{").splitlines()
    )
    [accepted] = posted["accepted"]
    assert accepted["status"] in {"accepted", "duplicate"}
    assert fate_line["event_id"] == accepted["event_id"]
    assert fate_line["fate"] in {"pending", "applied"}


def test_the_sdk_publishes_over_https_and_follows_fates(ingest: str, keys: dict[str, str]) -> None:
    from rehabgate.schemas.publisher import Events, HttpsPublisher, IngestRefused, exercise
    from rehabgate.schemas.signing import signer

    events = Events(clinic_id="clinic-a")
    client = unique_client("sdk")
    with HttpsPublisher(ingest, keys["clinic-a"]) as publisher:
        enrol = events.client_enrolled(client, "achilles-tendinopathy@1")
        first = events.session_logged(client, "s-1", pain_during=2, completed=True,
                                      exercises=[exercise("one-leg-heel-raise", 10, 10, 10)])  # fmt: skip
        entry_ids = publisher.publish_many([enrol, first])
        assert len(entry_ids) == 2
        assert publisher.publish(first) == entry_ids[1]  # idempotent
        fate_ = publisher.wait_for_fate(first, timeout=60)
        assert fate_["fate"] == "applied"
        assert fate_["decision"]["outcome"]
        assert publisher.fate(uuid.uuid4()) is None
        with pytest.raises(IngestRefused) as refused:
            publisher.publish(events.client_enrolled(client, "achilles-tendinopathy@1").model_copy(
                update={"clinic_id": "clinic-b"}))  # fmt: skip
        assert refused.value.status == 422
        assert refused.value.refused[0]["reason"].startswith("clinic mismatch")
    signed_events = Events(clinic_id="clinic-b")
    with HttpsPublisher(ingest, keys["clinic-b"], signer=signer(SIGNING_KEY)) as publisher:
        assert publisher.publish(
            signed_events.client_enrolled(unique_client(), "achilles-tendinopathy@1")
        )


def test_the_node_example_publishes_over_https(
    ingest: str, keys: dict[str, str], tmp_path: Path
) -> None:
    import shutil

    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is needed for the Node example test (Node >= 18)")
        pytest.skip("node is needed for the Node example test (Node >= 18)")
    script = Path(__file__).resolve().parents[1] / "node" / "publish.mjs"
    client = unique_client("node")
    run = subprocess.run(
        [node, str(script)],
        env={"PATH": os.environ["PATH"], "INGEST_URL": ingest, "API_KEY": keys["clinic-a"],
             "CLIENT_ID": client},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    published = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(published) == 2
    for item in published:
        settled(ingest, keys["clinic-a"], item["event_id"], "applied")


def test_a_key_revoked_while_in_use_is_refused_soon_after(ingest: str, server: str) -> None:
    key = issue_key(server, "clinic-a", INGEST_CLINICS)
    assert post(ingest, key, of("clinic-a", enrolment(unique_client()))).status_code == 202
    subprocess.run(
        [sys.executable, "-m", "rehabgate.services.cli.main", "ingest-key", "revoke",
         key.split("_")[1]],
        env=base_env(server), check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    # The ingest reads a key's record again at most every KEY_CACHE_S (2 s).
    wait_for(lambda: fate(ingest, key, str(uuid.uuid4())).status_code == 401, what="revocation")
    assert post(ingest, key, of("clinic-a", enrolment(unique_client()))).status_code == 401


def test_a_taken_port_leaves_the_ingest_waiting_not_dead(server: str, tmp_path: Path) -> None:
    """So a second `rehabgate up` on one host is not taken down by its ingest."""
    import socket

    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    log = tmp_path / "ingest.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rehabgate.services.cli.main", "ingest"],
            env=base_env(server, REHABGATE_INGEST_HTTP_PORT=str(port)), stdout=out, stderr=out,
        )  # fmt: skip
    try:
        wait_for(lambda: "http_unavailable" in log.read_text(), what="http_unavailable")
        assert process.poll() is None
        holder.close()

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).is_success
            except httpx.HTTPError:
                return False

        wait_for(ready, what="the ingest on the freed port")
    finally:
        holder.close()
        process.terminate()
        process.wait(timeout=60)


def test_an_event_applied_through_redis_first_shows_as_applied_through_https(
    ingest: str, keys: dict[str, str], server: str
) -> None:
    client = unique_client()
    enrol = of("clinic-a", enrolment(client))
    r = redis.Redis.from_url(server)
    r.xadd("rehabgate:inbound:clinic-a", {"event": json.dumps(enrol)})
    wait_for(lambda: r.sismember(f"rehabgate:{{p0}}:client:{client}:processed", enrol["event_id"]),
             what="applied through Redis")  # fmt: skip
    assert post(ingest, keys["clinic-a"], enrol).status_code == 202
    # The gatekeeper takes the posted entry for a duplicate; the event itself is applied.
    applied = settled(ingest, keys["clinic-a"], enrol["event_id"], "applied")
    assert applied["decision"] is not None
    r.close()
