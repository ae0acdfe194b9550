"""Tenancy and signatures on a real Redis, through the gatekeeper's use case: a clinic
cannot write for another clinic's clients (S15), and signed events hold (S17)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any

import pytest
import redis.asyncio as aredis

from rehabgate.schemas.signing import decode_key, generate_key, sign
from rehabgate.schemas.streams import SECURITY_EVENTS, evaluated_stream
from rehabgate.services.gatekeeper.process import Entry, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import RedisClientStore
from rehabgate.services.gatekeeper.tenancy import Source
from tests.events import checkin, enrolment, event, session, unique_client

pytestmark = pytest.mark.integration
PROTOCOLS = load_protocols()
_ids = itertools.count(1)
CLINIC_A = Source("rehabgate:inbound:clinic-a", "clinic-a")
CLINIC_B = Source("rehabgate:inbound:clinic-b", "clinic-b")
NOW = 1_800_000_000.0


def entries(*events: dict[str, Any]) -> list[Entry]:
    return [Entry(f"{next(_ids)}-0", {b"event": json.dumps(e).encode()}) for e in events]


def signed(key: str | list[str], *events: dict[str, Any], at: float = NOW) -> list[Entry]:
    out = []
    for e in events:
        fields = sign(json.dumps(e), key, int(at))
        out.append(Entry(f"{next(_ids)}-0", {k.encode(): v.encode() for k, v in fields.items()}))
    return out


def of_clinic(clinic: str, e: dict[str, Any]) -> dict[str, Any]:
    return {**e, "clinic_id": clinic}


async def key_dumps(r: aredis.Redis, store: RedisClientStore, clients: list[str]) -> list[Any]:
    """Every byte of every key of these clients (DUMP), to prove nothing was written."""
    dumps = []
    for client in clients:
        keys = store.keys(client)
        for key in (keys.state, keys.processed, keys.audit, keys.contact, keys.owner):
            dumps.append((key, await r.dump(key)))
    return dumps


async def security_events_for(r: aredis.Redis, event_ids: set[str]) -> list[dict[str, str]]:
    found = []
    for _, fields in await r.xrange(SECURITY_EVENTS):
        text = {k.decode(): v.decode() for k, v in fields.items()}
        if text.get("event_id") in event_ids:
            found.append(text)
    return found


def attack(client: str, n: int) -> dict[str, Any]:
    """One of six event types naming clinic A's client, as clinic B would send it."""
    kind = n % 6
    if kind == 0:
        return session(client, 1, pain=9)
    if kind == 1:
        return checkin(client, 1, pain=9, swelling=True)
    if kind == 2:
        return event("clinician.action", client, action="advance_override",
                     reason="move them on", clinician_id="dr-b", target_stage="stage-2")  # fmt: skip
    if kind == 3:
        return event("client.contact.updated", client, channel="email",
                     address="attacker@example.org")  # fmt: skip
    if kind == 4:
        return event("client.discharged", client, reason="taken over")
    return enrolment(client)


async def test_a_thousand_cross_clinic_attempts_are_refused_before_any_write(
    async_redis: aredis.Redis,
) -> None:
    store = RedisClientStore(async_redis, partitions=1)
    victims = [unique_client("victim") for _ in range(25)]
    setup = [of_clinic("clinic-a", e) for c in victims for e in (enrolment(c), session(c, 0))]
    setup += [of_clinic("clinic-a", event("client.contact.updated", c, channel="stream",
                                          address="c-inbox")) for c in victims[:5]]  # fmt: skip
    report = await process_batch(entries(*setup), store, PROTOCOLS, CLINIC_A)
    assert set(report.fates.values()) == {"applied"}
    before = await key_dumps(async_redis, store, victims)
    decisions_before = await async_redis.xlen(evaluated_stream(0))

    attempts = []
    for n in range(1000):
        e = attack(victims[n % len(victims)], n)
        # Half name their own clinic (the client is not theirs), half name clinic A
        # (the stream is not clinic A's): both must fail.
        attempts.append(of_clinic("clinic-b" if n % 2 else "clinic-a", e))
    fates: dict[str, str] = {}
    for start in range(0, len(attempts), 100):
        batch = entries(*attempts[start : start + 100])
        report = await process_batch(batch, store, PROTOCOLS, CLINIC_B)
        fates.update(report.fates)

    assert len(fates) == 1000
    assert set(fates.values()) == {"dead_lettered"}
    assert await key_dumps(async_redis, store, victims) == before
    assert await async_redis.xlen(evaluated_stream(0)) == decisions_before
    events = await security_events_for(async_redis, {str(e["event_id"]) for e in attempts})
    assert len(events) == 1000
    kinds = {e["kind"] for e in events}
    assert kinds == {"clinic_mismatch", "foreign_client"}
    assert all(e["clinic_id"] == "clinic-b" for e in events)
    # ids and the reason only: no payload value reaches the security events
    assert not any("attacker@example.org" in json.dumps(e) for e in events)
    assert all(set(e) <= {"kind", "reason", "stream", "entry_id", "clinic_id", "event_id",
                          "client_id", "claimed_clinic_id", "event_type", "at"}
               for e in events)  # fmt: skip


async def test_the_first_clinic_to_write_a_client_owns_it(async_redis: aredis.Redis) -> None:
    """A contact update creates the client's owner too, so another clinic cannot attach
    its own contact address to a client id before (or after) its clinic enrols it."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    contact = event("client.contact.updated", client, channel="email", address="a@example.org")
    await process_batch(entries(of_clinic("clinic-a", contact)), store, PROTOCOLS, CLINIC_A)

    hijack = of_clinic("clinic-b", {**contact, "event_id": str(uuid.uuid4()),
                                    "address": "attacker@example.org"})  # fmt: skip
    report = await process_batch(entries(hijack), store, PROTOCOLS, CLINIC_B)
    assert set(report.fates.values()) == {"dead_lettered"}
    b_enrols = await process_batch(
        entries(of_clinic("clinic-b", enrolment(client))), store, PROTOCOLS, CLINIC_B
    )
    assert set(b_enrols.fates.values()) == {"dead_lettered"}
    assert b_enrols.dead_letters[0].reason == "client belongs to another clinic"
    stored = await async_redis.hget(store.keys(client).contact, "contact")
    assert b"a@example.org" in stored
    a_enrols = await process_batch(
        entries(of_clinic("clinic-a", enrolment(client))), store, PROTOCOLS, CLINIC_A
    )
    assert set(a_enrols.fates.values()) == {"applied"}


async def test_a_race_between_clinics_is_settled_in_the_commit_step(
    async_redis: aredis.Redis,
) -> None:
    """Both clinics read the new client as nobody's; the atomic step lets one win."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    a = process_batch(
        entries(of_clinic("clinic-a", enrolment(client))), store, PROTOCOLS, CLINIC_A
    )
    b = process_batch(
        entries(of_clinic("clinic-b", enrolment(client))), store, PROTOCOLS, CLINIC_B
    )
    first, second = await asyncio.gather(a, b)
    fates = sorted([*first.fates.values(), *second.fates.values()])
    assert fates == ["applied", "dead_lettered"]
    assert await async_redis.xlen(store.keys(client).audit) == 1
    owner = (await async_redis.get(store.keys(client).owner)).decode()
    winner = first if owner == "clinic-a" else second
    assert set(winner.fates.values()) == {"applied"}


async def test_signed_events_replays_and_key_rotation(async_redis: aredis.Redis) -> None:
    old, new = generate_key(), generate_key()
    rotating = Source("rehabgate:inbound:clinic-s", "clinic-s", True,
                      (decode_key(old), decode_key(new)), 300)  # fmt: skip
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    first = signed(old, of_clinic("clinic-s", enrolment(client)))
    assert set((await process_batch(first, store, PROTOCOLS, rotating, NOW)).fates.values()) == {
        "applied"
    }
    # Replayed inside the window: the processed marker makes it a duplicate.
    again = await process_batch(first, store, PROTOCOLS, rotating, NOW + 10)
    assert set(again.fates.values()) == {"duplicate"}
    # Replayed after the window: refused before anything is read or written.
    late = await process_batch(first, store, PROTOCOLS, rotating, NOW + 301)
    assert set(late.fates.values()) == {"dead_lettered"}
    assert "expired" in late.dead_letters[0].reason
    # Signed with the new key, or with both: accepted.
    second = signed(new, of_clinic("clinic-s", session(client, 0)))
    third = signed([old, new], of_clinic("clinic-s", checkin(client, 1)))
    report = await process_batch([*second, *third], store, PROTOCOLS, rotating, NOW)
    assert set(report.fates.values()) == {"applied"}
    # Unsigned, or signed with a key the clinic does not have: refused.
    unsigned = entries(of_clinic("clinic-s", session(client, 1)))
    wrong = signed(generate_key(), of_clinic("clinic-s", session(client, 2)))
    refused = await process_batch([*unsigned, *wrong], store, PROTOCOLS, rotating, NOW)
    assert set(refused.fates.values()) == {"dead_lettered"}
    assert [letter.security is not None for letter in refused.dead_letters] == [True, True]
    assert await async_redis.xlen(store.keys(client).audit) == 3
