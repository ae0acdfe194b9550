"""Issues 5 and 17: physios read the audit trail over HTTP, one clinic's clients per
token or per signed-in physio; another clinic's client answers as an unknown one.

Served by a real uvicorn on loopback with the gatekeeper's own routes; histories
are applied through the real use case on a real Redis. Each run uses clinic ids
of its own, so other tests' clients never show up here.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.audit.export import CSV_COLUMNS
from rehabgate.services.gatekeeper.audit.reading import ClientAudit
from rehabgate.services.gatekeeper.physio_web.credentials import CredentialsFile
from tests.audit_histories import clinician_only, stored_history
from tests.physio_server import RecordingLog, physio_server, request

pytestmark = pytest.mark.integration
PROXY_SECRET = "proxy-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Clinics:
    url: str
    a: str
    b: str
    token_a: str
    token_b: str
    alice: ClientAudit  # clinic a, the rich history
    carol: ClientAudit  # clinic a, a clinician reason that looks like a formula
    bob: ClientAudit  # clinic b
    log: RecordingLog


@pytest.fixture(scope="module")
def physio_file(tmp_path_factory: pytest.TempPathFactory) -> CredentialsFile:
    return CredentialsFile(tmp_path_factory.mktemp("physios") / "physios.json")


@pytest.fixture(scope="module")
def physio(clinics: Clinics, physio_file: CredentialsFile) -> tuple[str, str]:
    password = physio_file.issue("physio-anna", clinics.a)
    assert password
    return "physio-anna", password


@pytest.fixture(scope="module")
def clinics(redis_url: str, physio_file: CredentialsFile) -> Iterator[Clinics]:
    run = uuid.uuid4().hex[:6]
    a, b = f"clinic-a-{run}", f"clinic-b-{run}"
    alice = stored_history(redis_url, f"alice-{run}", a)
    carol = stored_history(
        redis_url, f"carol-{run}", a,
        events=clinician_only(f"carol-{run}", a, '=HYPERLINK("http://x")'),
    )  # fmt: skip
    bob = stored_history(redis_url, f"bob-{run}", b)
    tokens = {a: f"tok-a-{uuid.uuid4().hex}", b: f"tok-b-{uuid.uuid4().hex}"}
    log = RecordingLog()
    with physio_server(
        redis_url, tokens, log, physio_credentials=physio_file.path,
        physio_sso_header="X-Forwarded-User", physio_sso_secret=SecretStr(PROXY_SECRET),
    ) as url:  # fmt: skip
        yield Clinics(url, a, b, tokens[a], tokens[b], alice, carol, bob, log)


def history_url(c: Clinics, client: str, extra: str = "") -> str:
    return f"{c.url}/physio/api/history?client={client}{extra}"


# --- who may read -------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "not-a-token", "tok-a-"])
def test_no_or_unknown_token_is_401(clinics: Clinics, token: str | None) -> None:
    client = clinics.alice.client_id
    api = request(history_url(clinics, client), token=token)
    assert api.status == 401
    assert api.headers["www-authenticate"].startswith("Bearer")
    page = request(f"{clinics.url}/physio/client?client={client}", token=token)
    assert page.status == 401
    assert '<form class="login" method="post" action="/physio/login">' in page.text
    for reply in (api, page):
        assert client not in reply.text
        assert "physio-7" not in reply.text


@pytest.mark.parametrize(
    "path",
    [
        "/physio/api/history?client={}",
        "/physio/api/history.csv?client={}",
        "/physio/client?client={}",
    ],
)
def test_cross_clinic_reads_are_refused(clinics: Clinics, path: str) -> None:
    """Clinic B's token opens B's client and is refused A's; and the other way round,
    with the very answer an unknown id gets (ids cannot be probed across clinics)."""
    own = request(clinics.url + path.format(clinics.bob.client_id), token=clinics.token_b)
    assert own.status == 200
    unknown = request(clinics.url + path.format("nobody-here"), token=clinics.token_a)
    assert unknown.status == 404
    for client, token in (
        (clinics.alice.client_id, clinics.token_b),
        (clinics.bob.client_id, clinics.token_a),
    ):
        refused = request(clinics.url + path.format(client), token=token)
        assert refused.status == 404, refused.text
        assert refused.body == unknown.body
        assert "physio-7" not in refused.text
        assert "Flare settled" not in refused.text


def test_a_clinic_overview_lists_only_its_own_clients(clinics: Clinics) -> None:
    for token, expected in (
        (clinics.token_a, [clinics.alice.client_id, clinics.carol.client_id]),
        (clinics.token_b, [clinics.bob.client_id]),
    ):
        reply = request(f"{clinics.url}/physio/api/clients", token=token)
        assert reply.status == 200
        assert sorted(c["client_id"] for c in json.loads(reply.body)["clients"]) == sorted(
            expected
        )
    page = request(f"{clinics.url}/physio", token=clinics.token_a)
    assert page.status == 200
    assert clinics.alice.client_id in page.text
    assert clinics.bob.client_id not in page.text


def test_a_corrupt_client_hides_no_other_and_its_page_says_what_cannot_be_read(
    clinics: Clinics, redis_url: str
) -> None:
    corrupt = ClientKeys.of(f"corrupt-{uuid.uuid4().hex[:8]}", partitions=1)
    r = redis.Redis.from_url(redis_url)
    r.set(corrupt.state, "not a hash")  # what no rehabgate version writes
    r.set(corrupt.owner, clinics.a)
    try:
        overview = request(f"{clinics.url}/physio/api/clients", token=clinics.token_a)
        assert overview.status == 200
        listed = {c["client_id"] for c in json.loads(overview.body)["clients"]}
        assert {clinics.alice.client_id, clinics.carol.client_id} <= listed
        assert {"level": "error", "event": "client_unreadable", "client_id":
                corrupt.client_id, "reason": "a key of the wrong type"}.items() <= next(
            line for line in clinics.log.lines if line["event"] == "client_unreadable"
        ).items()  # fmt: skip

        # Odd records are the client's, never a server error; said to their clinic only.
        page = request(history_url(clinics, corrupt.client_id), token=clinics.token_a)
        assert page.status == 200
        assert "cannot be read: a key of the wrong type" in page.text
        other = request(history_url(clinics, corrupt.client_id), token=clinics.token_b)
        unknown = request(history_url(clinics, "nobody-here"), token=clinics.token_b)
        assert (other.status, other.body) == (unknown.status, unknown.body)
    finally:  # the server is shared
        r.delete(corrupt.state, corrupt.owner)


def test_unknown_client_is_404_and_a_malformed_id_400(clinics: Clinics) -> None:
    assert request(history_url(clinics, "nobody-here"), token=clinics.token_a).status == 404
    for bad in ("", "a", "x%3Ay", "*", "..%2F"):
        assert request(history_url(clinics, bad), token=clinics.token_a).status == 400, bad


# --- what they read -------------------------------------------------------------------


def test_history_json_is_paginated(clinics: Clinics) -> None:
    total = clinics.alice.head.version
    first = json.loads(
        request(history_url(clinics, clinics.alice.client_id), token=clinics.token_a).body
    )
    assert (first["page"], first["per_page"], first["total"]) == (1, 50, total)
    assert first["chain"] == {"ok": True, "entries": total, "version": total, "broken": None}

    seqs, page = [], 1
    while True:
        body = json.loads(
            request(
                history_url(clinics, clinics.alice.client_id, f"&page={page}&per_page=10"),
                token=clinics.token_a,
            ).body
        )
        assert body["pages"] == -(-total // 10)
        if not body["items"]:
            break
        assert len(body["items"]) <= 10
        seqs += [item["seq"] for item in body["items"]]
        page += 1
    assert seqs == list(range(1, total + 1))
    assert page == body["pages"] + 1

    item = next(i for i in first["items"] if i["clinician_action"] == "approve")
    assert item["decided_by"] == "clinician"
    assert item["clinician_id"] == "physio-7"
    assert {
        "id",
        "kind",
        "role",
        "status",
        "observed",
        "threshold",
        "explanation",
        "source",
    } <= set(item["criteria"][0])

    for bad in ("&per_page=0", "&per_page=501", "&page=0", "&page=x"):
        reply = request(history_url(clinics, clinics.alice.client_id, bad), token=clinics.token_a)
        assert reply.status == 400, bad


def test_csv_export_has_the_documented_columns(clinics: Clinics) -> None:
    reply = request(
        f"{clinics.url}/physio/api/history.csv?client={clinics.alice.client_id}",
        token=clinics.token_a,
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/csv; charset=utf-8"
    assert reply.headers["content-disposition"] == (
        f'attachment; filename="rehabgate-history-{clinics.alice.client_id}.csv"'
    )
    reader = csv.reader(io.StringIO(reply.text))
    assert tuple(next(reader)) == CSV_COLUMNS
    rows = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in reader]
    assert [int(r["seq"]) for r in rows] == list(range(1, clinics.alice.head.version + 1))
    hold = rows[-2]
    assert (hold["event_type"], hold["clinician_action"], hold["clinician_id"]) == (
        "clinician.action",
        "hold",
        "physio-7",
    )
    assert hold["clinician_reason"] == "Travelling for two weeks: pause progression"
    assert hold["rules_verdict"].startswith("rules alone: would hold")
    session = next(r for r in rows if r["session_id"] == "s5")
    assert (session["pain_during"], session["next_morning_pain"], session["volume"]) == (
        "3",
        "3",
        "66.0",
    )
    assert "exit:min-days=" in session["criteria"]


def test_csv_defuses_a_formula_in_free_text(clinics: Clinics) -> None:
    reply = request(
        f"{clinics.url}/physio/api/history.csv?client={clinics.carol.client_id}",
        token=clinics.token_a,
    )
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert rows[1]["clinician_reason"] == '\'=HYPERLINK("http://x")'


def test_pages_are_self_contained_and_never_cached(clinics: Clinics) -> None:
    for path in (f"/physio/client?client={clinics.alice.client_id}", "/physio"):
        page = request(clinics.url + path, token=clinics.token_a)
        assert page.status == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        for external in ("<script", "src=", "@import", "url("):
            assert external not in page.text, external
        assert '<link rel="stylesheet" href="/physio/static/physio.css">' in page.text
    css = request(f"{clinics.url}/physio/static/physio.css")
    assert css.status == 200
    assert css.headers["content-type"].startswith("text/css")
    timeline = request(
        f"{clinics.url}/physio/client?client={clinics.alice.client_id}", token=clinics.token_a
    ).text
    assert "<svg" in timeline
    assert 0 < timeline.count("<details") < clinics.alice.head.version  # changes by default
    every = request(
        f"{clinics.url}/physio/client?client={clinics.alice.client_id}&every=1",
        token=clinics.token_a,
    ).text
    assert every.count("<details") == clinics.alice.head.version
    # Plain words: no list syntax, no " | " separators, no event or criterion codes.
    words = html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(svg|style)[\s\S]*?</\1>", "", every)))
    for code in (r"\[\d", r" \| ", r"\b(session|checkin|clinician)\.(logged|action)\b",
                 r"\b[a-z]+_[a-z]+_[a-z_]+\b", r"advance_override"):  # fmt: skip
        assert not re.search(code, words), (code, re.search(code, words))
    assert "History verified" in timeline


def test_a_physio_signs_in_as_themself_with_a_signed_cookie(
    clinics: Clinics, physio: tuple[str, str]
) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    physio_id, password = physio
    for body in (f"physio={physio_id}&password=nope", "physio=nobody&password=x"):
        wrong = request(
            f"{clinics.url}/physio/login", method="POST", body=body.encode(), headers=form
        )
        assert wrong.status == 401
        assert "set-cookie" not in wrong.headers
    clinic_token = f"token={clinics.token_a}".encode()  # a clinic token signs in nobody
    assert (
        request(
            f"{clinics.url}/physio/login", method="POST", body=clinic_token, headers=form
        ).status
        == 401
    )

    ok = request(
        f"{clinics.url}/physio/login",
        method="POST",
        body=f"physio={physio_id}&password={password}".encode(),
        headers=form,
    )
    assert (ok.status, ok.headers["location"]) == (303, "/physio")
    cookie = ok.headers["set-cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/physio"):
        assert flag in cookie
    assert password not in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    overview = request(f"{clinics.url}/physio", headers=jar)
    assert overview.status == 200
    assert f"signed in as <b>{physio_id}</b>" in overview.text
    unknown = request(f"{clinics.url}/physio/client?client=nobody-here", headers=jar)
    other = request(f"{clinics.url}/physio/client?client={clinics.bob.client_id}", headers=jar)
    assert other.status == unknown.status == 404
    assert other.body == unknown.body
    tampered = {"Cookie": jar["Cookie"][:-2] + "xx"}
    assert request(f"{clinics.url}/physio", headers=tampered).status == 401

    out = request(f"{clinics.url}/physio/logout", headers=jar)
    assert out.status == 303
    assert "Max-Age=0" in out.headers["set-cookie"]


def test_a_single_sign_on_proxy_signs_in_the_physio_it_names(
    clinics: Clinics, physio_file: CredentialsFile
) -> None:
    physio_file.issue("physio-sso", clinics.a, sso_only=True)
    user = {"X-Forwarded-User": "physio-sso"}
    page = f"{clinics.url}/physio/client?client={clinics.alice.client_id}"
    assert request(page, headers=user).status == 401  # not from the proxy: no secret
    wrong = {**user, "X-Rehabgate-Proxy-Secret": "guessed"}
    assert request(page, headers=wrong).status == 401
    proxied = {**user, "X-Rehabgate-Proxy-Secret": PROXY_SECRET}
    signed = request(page, headers=proxied)
    assert signed.status == 303
    assert signed.headers["location"] == f"/physio/client?client={clinics.alice.client_id}"
    jar = {"Cookie": signed.headers["set-cookie"].split(";")[0]}
    shown = request(page, headers={**proxied, **jar})
    assert shown.status == 200
    assert "signed in as <b>physio-sso</b>" in shown.text
    assert 'name="csrf"' in shown.text
    stranger = {"X-Forwarded-User": "not-a-physio", "X-Rehabgate-Proxy-Secret": PROXY_SECRET}
    assert request(page, headers=stranger).status == 401


def test_the_physio_command_issues_lists_and_revokes(tmp_path: Path) -> None:
    file = tmp_path / "physios.json"
    env = {**os.environ, "REHABGATE_PHYSIO_CREDENTIALS": str(file)}
    cli = [sys.executable, "-m", "rehabgate.services.cli.main", "physio"]
    added = subprocess.run([*cli, "add", "dora", "--clinic", "clinic-z"], env=env,
                           capture_output=True, text=True, check=True)  # fmt: skip
    password = added.stdout.split("password (shown once): ")[1].strip()
    assert CredentialsFile(file).check("dora", password) is not None
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, check=True)
    assert listed.stdout.startswith("dora\tclinic-z\tpassword")
    assert password not in listed.stdout
    subprocess.run([*cli, "revoke", "dora"], env=env, capture_output=True, check=True)
    again = subprocess.run([*cli, "revoke", "dora"], env=env, capture_output=True, text=True)
    assert again.returncode != 0
    assert "no physio dora" in again.stderr
    unset = {k: v for k, v in env.items() if k != "REHABGATE_PHYSIO_CREDENTIALS"}
    missing = subprocess.run([*cli, "list"], env=unset, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "REHABGATE_PHYSIO_CREDENTIALS" in missing.stderr


def test_a_revoked_physio_is_out_at_the_next_request(
    clinics: Clinics, physio_file: CredentialsFile
) -> None:
    password = physio_file.issue("physio-leaving", clinics.a)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    ok = request(
        f"{clinics.url}/physio/login", method="POST", headers=form,
        body=f"physio=physio-leaving&password={password}".encode(),
    )  # fmt: skip
    jar = {"Cookie": ok.headers["set-cookie"].split(";")[0]}
    assert request(f"{clinics.url}/physio", headers=jar).status == 200
    assert physio_file.revoke("physio-leaving")
    assert request(f"{clinics.url}/physio", headers=jar).status == 401


def test_reads_are_logged_with_ids_never_tokens_or_health_values(clinics: Clinics) -> None:
    request(history_url(clinics, clinics.alice.client_id), token=clinics.token_a)
    request(history_url(clinics, clinics.alice.client_id), token=clinics.token_b)
    assert (
        request(history_url(clinics, "jane.doe%40mail.example"), token=clinics.token_a).status
        == 400
    )
    lines = clinics.log.lines
    read = [
        ln
        for ln in lines
        if ln["event"] == "physio_read" and ln["client_id"] == clinics.alice.client_id
    ]
    refused = [ln for ln in lines if ln["event"] == "physio_refused" and ln["status"] == 404]
    assert read
    assert refused
    text = json.dumps(lines)
    assert any(ln["client_id"] == "(malformed)" for ln in lines)
    for secret in (
        clinics.token_a,
        clinics.token_b,
        "Flare settled",
        "pain_during",
        "Travelling",
        "jane",
    ):
        assert secret not in text
