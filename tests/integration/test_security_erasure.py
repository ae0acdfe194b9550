"""Erasure mid-history (S21): `rehabgate erase` removes a client's health data and
contact details from every key and stream of a live system (gatekeeper and notifier
running), records the erasure in a hash-chained ledger, and leaves every other
client's audit chain verifiable (checked with the audit verifier itself).

A private server, so the "no trace" check can read every key and every value."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from rehabgate.schemas.streams import clinic_inbound_stream, erasures_stream, evaluated_stream
from rehabgate.services.cli.erasure import erase_client, verify_erasures
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.redis_server import EmbeddedRedis
from rehabgate.services.gatekeeper.audit.reading import read_client
from rehabgate.services.gatekeeper.audit.verify import verify_chain
from tests.events import checkin, enrolment, event, session
from tests.waiting import caught_up, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CLINIC = "clinic-e"
STREAM = clinic_inbound_stream(CLINIC)
CLIENTS = 24
ERASED = 6


def canary_address(client: str) -> str:
    return f"{client}.canary@example.org"


def canary_reason(client: str) -> str:
    return f"Canary note about {client}: knee gave way at home"


def history(client: str, days: range) -> list[dict[str, Any]]:
    """A client's events on those days: sessions and check-ins with health values."""
    events: list[dict[str, Any]] = []
    for day in days:
        events.append(session(client, day, pain=random.randint(0, 4)))
        events.append(checkin(client, day + 1, pain=random.randint(0, 6),
                              swelling=random.random() < 0.2))  # fmt: skip
    return [{**e, "clinic_id": CLINIC} for e in events]


def opening(client: str) -> list[dict[str, Any]]:
    events = [
        enrolment(client),
        # The client-messages stream as channel (so messages land in Redis), with an
        # address that must go with the rest.
        event("client.contact.updated", client, channel="stream", address=canary_address(client)),
        event(
            "clinician.action",
            client,
            hours=30,
            action="hold",
            reason=canary_reason(client),
            clinician_id="dr-e",
        ),
    ]
    return [{**e, "clinic_id": CLINIC} for e in events]


def everything(r: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    """(key, a value's bytes) for every key on the server, of every type."""
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        yield key, key
        if kind == b"string":
            yield key, r.get(key) or b""
        elif kind == b"hash":
            for field, value in r.hgetall(key).items():
                yield key, field + b"=" + value
        elif kind == b"set":
            yield from ((key, m) for m in r.smembers(key))
        elif kind == b"zset":
            yield from ((key, m) for m, _ in r.zrange(key, 0, -1, withscores=True))
        elif kind == b"list":
            yield from ((key, m) for m in r.lrange(key, 0, -1))
        elif kind == b"stream":
            for entry_id, fields in r.xrange(key):
                yield key, entry_id + b" " + b" ".join(k + b"=" + v for k, v in fields.items())


def settled(r: redis.Redis) -> bool:
    """Nothing left to do: inbound and decisions consumed, outbox empty. (By entry
    ids: XINFO's lag is unknown, not 0, once erasure deleted entries.) The
    gatekeeper writes an event's decision before it acknowledges the event."""
    return (
        caught_up(r, STREAM, "gatekeeper")
        and caught_up(r, evaluated_stream(0), "notifier")
        and r.zcard("rehabgate:{p0}:outbox:due") == 0
    )


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rehabgate.services.cli.main", *args],
        env={**os.environ, "REDIS_URL": url}, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_erasure_mid_history_leaves_no_trace_and_every_other_chain_verifiable(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    random.seed(7)
    clients = [f"er-{uuid.uuid4().hex[:8]}" for _ in range(CLIENTS)]
    erased = rng.sample(clients, ERASED)
    env = {"REHABGATE_CLINICS": json.dumps({CLINIC: {}}), "REHABGATE_HTTP_PORT": "0",
           "REHABGATE_COALESCE_WINDOW_S": "0"}  # fmt: skip
    with (
        EmbeddedRedis(tmp_path / "redis", appendonly=False) as server,
        Stack(server.url, None, tmp_path / "logs", {"gatekeeper": env, "notifier": env}),
    ):
        r = redis.Redis.from_url(server.url)
        for client in clients:
            for e in [*opening(client), *history(client, range(0, 6))]:
                r.xadd(STREAM, {"event": json.dumps(e)})
        for client in erased:  # refused events holding health values: dead letters
            bad = {**session(client, 9, pain=2), "clinic_id": CLINIC, "pain_during": 97}
            r.xadd(STREAM, {"event": json.dumps(bad)})
        wait_for(lambda: settled(r), every=0.2, what="the first histories settled")

        # Before: the first erased client is everywhere the system keeps anything.
        keys = ClientKeys.of(erased[0], 1)
        holding = {key.decode() for key, value in everything(r) if erased[0].encode() in value}
        assert {keys.state, keys.processed, keys.audit, keys.contact, keys.owner, STREAM,
                evaluated_stream(0), "rehabgate:{p0}:client-messages", "rehabgate:{p0}:receipts",
                "rehabgate:inbound:dead-letter"} <= holding  # fmt: skip
        heads = {}
        for client in erased:
            state = ClientKeys.of(client, 1).state
            heads[client] = (r.hget(state, "audit_head"), int(r.hget(state, "version")))
        # Half through the command, half through the function: the same code.
        for client in erased[: ERASED // 2]:
            done = run_cli(server.url, "erase", client, "--ticket", f"req-{client}")
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"erased client {client} (clinic {CLINIC})" in done.stdout

        async def erase_rest() -> None:
            client = aredis.Redis.from_url(server.url)
            for who in erased[ERASED // 2 :]:
                await erase_client(client, who, 1)
            await client.aclose()

        asyncio.run(erase_rest())

        # The rest of the clinic goes on: more history for everyone not erased.
        for client in clients:
            if client not in erased:
                for e in history(client, range(6, 10)):
                    r.xadd(STREAM, {"event": json.dumps(e)})
        wait_for(lambda: settled(r), every=0.2, what="the later histories settled")

        # No trace of the erased: no key, value or entry names them, their address or
        # their clinician's note, except the erasure ledger's tombstones.
        for key, value in everything(r):
            if key.startswith(erasures_stream(0).encode()):
                continue
            for client in erased:
                for needle in (client, canary_address(client), canary_reason(client)):
                    assert needle.encode() not in value, f"{needle} left in {key!r}"
        # The others are all there, each chain intact by the audit verifier.
        survivors = [c for c in clients if c not in erased]

        async def verdicts() -> list[bool]:
            client = aredis.Redis.from_url(server.url)
            found = []
            for who in survivors:
                audit = await read_client(client, ClientKeys.of(who, 1))
                assert audit.exists
                found.append(verify_chain(audit.entries, audit.head).ok)
            ledger = await verify_erasures(client, 0)
            await client.aclose()
            assert ledger.ok
            assert ledger.entries == ERASED
            return found

        assert all(asyncio.run(verdicts()))
        whole = run_cli(server.url, "audit", "verify", "--all")
        assert whole.returncode == 0, whole.stdout
        assert f"{len(survivors)} clients checked, 0 broken" in whole.stdout

        # The erasure itself is on record: one tombstone per erased client, naming the
        # chain that was erased (its head and length), never its content.
        tombstones = [json.loads(f[b"entry"])["event"] for _, f in r.xrange(erasures_stream(0))]
        assert sorted(t["client_id"] for t in tombstones) == sorted(erased)
        for record in tombstones:
            head, length = heads[record["client_id"]]
            assert record["event_type"] == "client.erased"
            assert record["clinic_id"] == CLINIC
            assert record["erased_chain_head"] == head.decode()
            assert record["erased_chain_length"] == length
            assert record["removed"]["contact_details"] == 1
            assert record["removed"]["audit_entries"] == length
        assert {t["ticket"] for t in tombstones} >= {f"req-{c}" for c in erased[: ERASED // 2]}

        # Erasing again finds nothing and records nothing.
        again = run_cli(server.url, "erase", erased[0])
        assert again.returncode == 2
        assert "nothing of client" in again.stderr
        assert r.xlen(erasures_stream(0)) == ERASED
        check = run_cli(server.url, "erase", "--verify")
        assert check.returncode == 0, check.stdout
        r.close()
