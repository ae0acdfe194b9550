"""Least privilege on a real server with the generated ACL file loaded (S14): every
clinic user tries XADD / XRANGE / XREADGROUP / EVAL / XDEL on every other clinic's
stream and on the services' keys, all refused and all in ACL LOG; the services
themselves run under their own users without a single refusal; and the whole
stack runs over TLS with AUTH when a TLS-capable redis-server is at hand."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from rehabgate.schemas.signing import generate_key, sign
from rehabgate.schemas.streams import (
    INBOUND,
    INBOUND_DEAD_LETTER,
    SECURITY_EVENTS,
    client_messages_stream,
    clinic_inbound_stream,
    evaluated_stream,
)
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.acl import ADMIN, AUDIT, GATEKEEPER, NOTIFIER, clinic_user, generate
from rehabgate.services.common.heartbeat import heartbeat_key
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.redis_server import EmbeddedRedis, free_port
from tests.events import checkin, enrolment, session, unique_client
from tests.physio_server import request
from tests.waiting import died, wait_for

pytestmark = pytest.mark.integration
CLINICS = [f"clinic-{n:02d}" for n in range(1, 21)]
SIGNING_KEY = generate_key()
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class AclServer:
    server: EmbeddedRedis
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        return self.server.url_for(user, self.passwords[user])

    def client(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(user))


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    """A private server (not the session one: it has no default user) with the file
    `rehabgate acl generate` writes for 20 clinics."""
    directory = tmp_path_factory.mktemp("acl")
    acl = generate(CLINICS, {ADMIN: ADMIN_PASSWORD})
    (directory / "users.acl").write_text(acl.text)
    with EmbeddedRedis(directory / "data", appendonly=False, aclfile=directory / "users.acl") as s:
        served = AclServer(s, dict(acl.passwords))
        admin = served.client(ADMIN)
        admin.config_set("acllog-max-len", 100_000)
        admin.close()
        yield served


@pytest.fixture
def admin(acl_server: AclServer) -> Iterator[redis.Redis]:
    client = acl_server.client(ADMIN)
    client.acl_log_reset()
    yield client
    client.close()


def refused(attempt: Callable[[], Any]) -> bool:
    try:
        attempt()
    except redis.exceptions.NoPermissionError:
        return True
    return False


def attempts(r: redis.Redis, key: str) -> dict[str, Callable[[], Any]]:
    """The five commands of the matrix, each aimed at `key`."""
    return {
        "xadd": lambda: r.xadd(key, {"event": "{}"}, maxlen=0),
        "xrange": lambda: r.xrange(key),
        "xreadgroup": lambda: r.xreadgroup("gatekeeper", "intruder", {key: "0"}, count=10),
        "eval": lambda: r.eval("return redis.call('XRANGE', KEYS[1], '-', '+')", 1, key),
        "xdel": lambda: r.xdel(key, "0-1"),
    }


SERVICE_KEYS = [
    INBOUND,
    INBOUND_DEAD_LETTER,
    SECURITY_EVENTS,
    evaluated_stream(0),
    client_messages_stream(0),
    ClientKeys("victim", 0).audit,
    ClientKeys("victim", 0).state,
    heartbeat_key(GATEKEEPER),
]


def test_every_clinic_is_refused_on_every_other_clinics_stream_and_on_service_keys(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    for clinic in CLINICS:  # each stream holds one event of its clinic's
        own = acl_server.client(clinic_user(clinic))
        own.xadd(clinic_inbound_stream(clinic), {"event": json.dumps({"clinic": clinic})})
        own.close()
    admin.acl_log_reset()

    tried = 0
    for clinic in CLINICS:
        r = acl_server.client(clinic_user(clinic))
        targets = [clinic_inbound_stream(c) for c in CLINICS if c != clinic] + SERVICE_KEYS
        for key in targets:
            for command, attempt in attempts(r, key).items():
                assert refused(attempt), f"{clinic} could run {command} on {key}"
                tried += 1
        r.close()
    assert tried == len(CLINICS) * (len(CLINICS) - 1 + len(SERVICE_KEYS)) * 5

    # Every refusal is in ACL LOG: one entry per (user, refused key) for XADD, and per
    # (user, command) for the commands a clinic has no right to at all.
    log = admin.acl_log(count=100_000)
    for clinic in CLINICS:
        user = clinic_user(clinic)
        mine = [e for e in log if e["username"] == user]
        refused_keys = {e["object"] for e in mine if e["reason"] == "key"}
        others = {clinic_inbound_stream(c) for c in CLINICS if c != clinic}
        assert others | set(SERVICE_KEYS) <= refused_keys
        commands = {e["object"]: int(e["count"]) for e in mine if e["reason"] == "command"}
        targets = len(CLINICS) - 1 + len(SERVICE_KEYS)
        assert commands == {"xrange": targets, "xreadgroup": targets, "eval": targets,
                            "xdel": targets}  # fmt: skip
    # ... and no clinic's event left its own stream.
    for clinic in CLINICS:
        rows = admin.xrange(clinic_inbound_stream(clinic))
        assert [json.loads(f[b"event"]) for _, f in rows] == [{"clinic": clinic}]


def test_a_clinic_may_add_to_its_own_stream_but_not_read_it(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    r = acl_server.client(clinic_user(CLINICS[0]))
    own = clinic_inbound_stream(CLINICS[0])
    assert r.xadd(own, {"event": "{}"})
    assert refused(lambda: r.xrange(own))
    assert refused(lambda: r.xlen(own))
    assert refused(lambda: r.ping())
    # The trim loophole: XADD MAXLEN cannot be forbidden, but reaches only its own stream.
    assert r.xadd(own, {"event": "{}"}, maxlen=0)
    assert refused(lambda: r.xadd(clinic_inbound_stream(CLINICS[1]), {"e": "{}"}, maxlen=0))
    r.close()


def test_services_are_refused_outside_their_keys(
    acl_server: AclServer, admin: redis.Redis
) -> None:
    client = ClientKeys("someone", 0)
    notifier = acl_server.client(NOTIFIER)
    assert refused(lambda: notifier.xrange(clinic_inbound_stream(CLINICS[0])))
    assert refused(lambda: notifier.hget(client.state, "state"))
    assert refused(lambda: notifier.xadd(client.audit, {"entry": "{}"}))
    assert refused(lambda: notifier.xrange(INBOUND_DEAD_LETTER))
    assert notifier.hget(client.contact, "contact") is None  # the one client key it reads
    audit = acl_server.client(AUDIT)
    assert audit.xrange(client.audit) == []
    assert refused(lambda: audit.xadd(client.audit, {"entry": "{}"}))
    assert refused(lambda: audit.delete(client.audit))
    assert refused(lambda: audit.xrange(evaluated_stream(0)))
    gatekeeper = acl_server.client(GATEKEEPER)
    assert refused(lambda: gatekeeper.xrange(SECURITY_EVENTS))  # write-only
    assert refused(lambda: gatekeeper.xrange(client_messages_stream(0)))
    assert refused(lambda: gatekeeper.hgetall("rehabgate:{p0}:outbox:msg:x"))
    for service in (notifier, audit, gatekeeper):
        assert refused(lambda s=service: s.flushall())  # type: ignore[misc]
        assert refused(lambda s=service: s.config_get("*"))  # type: ignore[misc]
        assert refused(lambda s=service: s.acl_list())  # type: ignore[misc]
        service.close()


def test_nobody_connects_without_a_user_and_password(acl_server: AclServer) -> None:
    anonymous = redis.Redis.from_url(acl_server.server.url)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis.from_url(acl_server.server.url_for(GATEKEEPER, "not-the-password"))
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()


def decisions_for(r: redis.Redis, client: str) -> list[dict[str, Any]]:
    found = [json.loads(f[b"event"]) for _, f in r.xrange(evaluated_stream(0))]
    return [d for d in found if d["client_id"] == client]


@pytest.mark.slow
def test_the_services_run_under_their_own_users_without_a_refusal(
    acl_server: AclServer, admin: redis.Redis, tmp_path: Path
) -> None:
    """Proves the ACL rules cover every command the services issue (FastStream's, the
    Lua scripts', the physio pages'): a missing permission would show in ACL LOG."""
    signed_clinic, plain_clinic = CLINICS[0], CLINICS[1]
    clinics = {signed_clinic: {"require_signature": True, "keys": [SIGNING_KEY]},
               plain_clinic: {}}  # fmt: skip
    port = free_port()
    common = {
        "REHABGATE_CLINICS": json.dumps(clinics),
        "REHABGATE_CLAIM_IDLE_MS": "500",
        "REHABGATE_TRIM_INTERVAL_S": "0.5",
        "REHABGATE_HTTP_PORT": str(port),
        "REHABGATE_CLINIC_TOKENS": json.dumps({signed_clinic: "physio-token"}),
    }
    env = {
        GATEKEEPER: {**common, "REDIS_URL": acl_server.url(GATEKEEPER)},
        NOTIFIER: {**common, "REDIS_URL": acl_server.url(NOTIFIER)},
    }
    admin.acl_log_reset()
    signed_client, plain_client = unique_client("signed"), unique_client("plain")
    with Stack(acl_server.url(ADMIN), None, tmp_path / "logs", env) as stack:
        publisher = acl_server.client(clinic_user(signed_clinic))
        # The last check-in is late (the evening before the session): it is decided
        # from a checkpoint, so the gatekeeper reads those too.
        for e in (enrolment(signed_client), session(signed_client, 0), checkin(signed_client, 1),
                  checkin(signed_client, 0)):  # fmt: skip
            body = json.dumps({**e, "clinic_id": signed_clinic})
            publisher.xadd(
                clinic_inbound_stream(signed_clinic), sign(body, SIGNING_KEY, int(time.time()))
            )
        other = acl_server.client(clinic_user(plain_clinic))
        other.xadd(clinic_inbound_stream(plain_clinic),
                   {"event": json.dumps({**enrolment(plain_client), "clinic_id": plain_clinic})})  # fmt: skip
        wait_for(
            lambda: len(decisions_for(admin, signed_client)) >= 4,
            what="4 decisions",
            abort=died(stack),
        )
        wait_for(
            lambda: decisions_for(admin, plain_client),
            what="the other clinic's decision",
            abort=died(stack),
        )
        # Now that the signed clinic owns its client, the other one tries to write for it.
        foreign = {**session(signed_client, 1), "clinic_id": plain_clinic}
        other.xadd(clinic_inbound_stream(plain_clinic), {"event": json.dumps(foreign)})
        wait_for(lambda: any(f.get(b"client_id") == signed_client.encode()
                             and f[b"kind"] == b"foreign_client"
                             for _, f in admin.xrange(SECURITY_EVENTS)),
                 what="the foreign_client security event", abort=died(stack))  # fmt: skip
        wait_for(lambda: [f for _, f in admin.xrange(client_messages_stream(0))
                          if signed_client.encode() in f[b"message"]],
                 what="the client's message", abort=died(stack))  # fmt: skip
        reply = request(f"http://127.0.0.1:{port}/physio/api/history?client={signed_client}",
                        token="physio-token")  # fmt: skip
        assert reply.status == 200
        assert json.loads(reply.body)["chain"]["ok"] is True
        health = subprocess.run(
            [sys.executable, "-m", "rehabgate.services.cli.main", "health", "gatekeeper"],
            env={**os.environ, "REDIS_URL": acl_server.url(GATEKEEPER)},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert health.returncode == 0, health.stdout
        verify = subprocess.run(
            [sys.executable, "-m", "rehabgate.services.cli.main", "audit", "verify",
             signed_client],
            env={**os.environ, "REDIS_URL": acl_server.url(AUDIT)},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # Trim rounds (every 0.5 s) and a heartbeat (every 2 s) under the service users:
        # a beat stamped 2 s from now shows the service's loop ran all that while.
        since = int(time.time() * 1000) + 2000
        for service in ("gatekeeper", "notifier"):
            wait_for(
                lambda s=service: _beat(admin, s) >= since,
                what=f"a {service} heartbeat",
                abort=died(stack),
            )
        assert not died(stack)()
        publisher.close()
        other.close()
    log = admin.acl_log(count=1000)
    service_refusals = [e for e in log if e["username"] in (GATEKEEPER, NOTIFIER, AUDIT)]
    assert service_refusals == []


def _beat(r: redis.Redis, service: str) -> int:
    """The service's newest heartbeat (unix ms), 0 without one."""
    return max((int(v) for v in r.hvals(heartbeat_key(service))), default=0)


def _tls_redis_server() -> str | None:
    """Debian's redis-server is built with TLS; the embedded Valkey is not."""
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("openssl") is None:
        return None
    probe = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return binary if probe.returncode == 0 else None


@pytest.mark.slow
def test_the_stack_runs_over_tls_with_auth(tmp_path: Path) -> None:
    binary = _tls_redis_server()
    if binary is None:
        pytest.skip("needs a TLS-capable redis-server and openssl (apt-get install redis-server)")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v=(\d+)\.(\d+)", version)
    server_version = (int(found[1]), int(found[2])) if found else (7, 0)
    acl = generate(["clinic-tls"], {}, server_version)
    (tmp_path / "users.acl").write_text(acl.text)
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
         "--tls-ca-cert-file", str(tmp_path / "cert.pem"), "--tls-auth-clients", "no",
         "--aclfile", str(tmp_path / "users.acl"), "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ca = f"ssl_ca_certs={tmp_path / 'cert.pem'}&ssl_cert_reqs=required"

    def url(user: str) -> str:
        return f"rediss://{user}:{acl.passwords[user]}@127.0.0.1:{port}/0?{ca}"

    try:
        admin = redis.Redis.from_url(url(ADMIN))
        wait_for(lambda: _answers(admin), what="the TLS server")
        plain = redis.Redis(port=port, username=ADMIN, password=acl.passwords[ADMIN])
        with pytest.raises(redis.exceptions.ConnectionError):
            plain.ping()  # no TLS, no conversation
        client = unique_client("tls")
        env = {
            service: {"REDIS_URL": url(service), "REHABGATE_HTTP_PORT": "0",
                      "REHABGATE_CLINICS": json.dumps({"clinic-tls": {}})}
            for service in (GATEKEEPER, NOTIFIER)
        }  # fmt: skip
        with Stack(url(ADMIN), None, tmp_path / "logs", env) as stack:
            publisher = redis.Redis.from_url(url(clinic_user("clinic-tls")))
            publisher.xadd(clinic_inbound_stream("clinic-tls"),
                           {"event": json.dumps({**enrolment(client), "clinic_id": "clinic-tls"})})  # fmt: skip
            wait_for(lambda: decisions_for(admin, client), what="the decision", abort=died(stack))
            wait_for(lambda: [f for _, f in admin.xrange(client_messages_stream(0))
                              if client.encode() in f[b"message"]], what="the message", abort=died(stack))  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
