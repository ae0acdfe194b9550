"""The gatekeeper's use case and Redis adapter against a real server."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
import redis.asyncio as aredis

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import INBOUND_DEAD_LETTER, evaluated_stream
from rehabgate.services.gatekeeper.audit.codec import decode_entry
from rehabgate.services.gatekeeper.domain.history import encode_state
from rehabgate.services.gatekeeper.process import Entry, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import GENESIS, Commit, RedisClientStore
from tests.events import checkin, enrolment, session, unique_client

pytestmark = pytest.mark.integration
PROTOCOLS = load_protocols()
_seq = iter(range(1, 10**9))


def entries(*events: dict[str, object] | bytes) -> list[Entry]:
    """Stream entries as a plain `XADD ... event <json>` produces them."""
    out = []
    for e in events:
        raw = e if isinstance(e, bytes) else json.dumps(e).encode()
        out.append(Entry(f"{next(_seq)}-0", {b"event": raw}))
    return out


async def decisions_for(r: aredis.Redis, client_id: str) -> list[ProgressionEvaluated]:
    found = []
    for _, fields in await r.xrange(evaluated_stream(0)):
        decision = ProgressionEvaluated.model_validate_json(fields[b"event"])
        if decision.client_id == client_id:
            found.append(decision)
    return found


async def test_batch_writes_state_audit_decision_and_marker_for_each_event(
    async_redis: aredis.Redis,
) -> None:
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    batch = entries(enrolment(client), session(client, 0), checkin(client, 1))

    report = await process_batch(batch, store, PROTOCOLS)

    assert set(report.fates.values()) == {"applied"}
    keys = store.keys(client)
    assert int(await async_redis.hget(keys.state, "version")) == 3
    assert await async_redis.scard(keys.processed) == 3
    assert await async_redis.xlen(keys.audit) == 3
    outcomes = [d.outcome for d in await decisions_for(async_redis, client)]
    assert outcomes == ["unlocked", "held", "held"]


async def test_redelivered_batch_is_recognised_and_changes_nothing(
    async_redis: aredis.Redis,
) -> None:
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    batch = entries(enrolment(client), session(client, 0))
    await process_batch(batch, store, PROTOCOLS)

    again = await process_batch(batch, store, PROTOCOLS)

    assert set(again.fates.values()) == {"duplicate"}
    assert await async_redis.xlen(store.keys(client).audit) == 2
    assert len(await decisions_for(async_redis, client)) == 2


@pytest.mark.parametrize(
    ("raw", "reason_start"),
    [
        (b"{not json", "malformed JSON"),
        (json.dumps({"event_type": "session.logged"}).encode(), "schema violation"),
        (json.dumps(session("x-1", 0, pain=11)).encode(), "schema violation"),
        (json.dumps(session(unique_client(), 0)).encode(), "unknown client"),
        (json.dumps(enrolment(unique_client(), "no-such-protocol@1")).encode(),
         "unknown protocol"),
    ],
)  # fmt: skip
async def test_bad_input_is_dead_lettered_with_reason_and_the_batch_goes_on(
    async_redis: aredis.Redis, raw: bytes, reason_start: str
) -> None:
    store = RedisClientStore(async_redis, partitions=1)
    good_client = unique_client()
    batch = entries(raw, enrolment(good_client))
    bad_id = batch[0].entry_id

    report = await process_batch(batch, store, PROTOCOLS)

    assert report.fates == {bad_id: "dead_lettered", batch[1].entry_id: "applied"}
    letters = [f for _, f in await async_redis.xrange(INBOUND_DEAD_LETTER)
               if f[b"source_id"] == bad_id.encode()]  # fmt: skip
    assert len(letters) == 1
    assert letters[0][b"reason"].decode().startswith(reason_start)
    assert letters[0][b"raw"] == raw


async def test_entry_without_event_field_is_dead_lettered(async_redis: aredis.Redis) -> None:
    store = RedisClientStore(async_redis, partitions=1)
    batch = [Entry("77-0", {b"data": b"{}"})]

    report = await process_batch(batch, store, PROTOCOLS)

    assert report.fates == {"77-0": "dead_lettered"}
    assert "missing field 'event'" in report.dead_letters[0].reason


async def test_stale_commit_is_refused_whole(async_redis: aredis.Redis) -> None:
    """A step computed on an outdated version writes nothing (another process won)."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    await process_batch(entries(enrolment(client)), store, PROTOCOLS)
    snapshot = (await store.load({client: ["e-new"]}))[client]
    await async_redis.hincrby(store.keys(client).state, "version", 1)  # another writer
    assert snapshot.state is not None
    stale = Commit(
        store.keys(client), "e-new", snapshot.version, snapshot.audit_head,
        encode_state(snapshot.state), "{}", "h", (), "clinic-a", "digest",
    )  # fmt: skip
    result = await store.commit([stale])

    assert result == ["conflict"]
    assert not await async_redis.sismember(store.keys(client).processed, "e-new")
    assert await async_redis.xlen(store.keys(client).audit) == 1


async def test_a_step_built_on_a_refused_step_is_refused_too(async_redis: aredis.Redis) -> None:
    """Another writer applied one step: this batch's first step for the client conflicts,
    and its second, which expects the version after the first, must not slip through
    on the other writer's version: it links to a chain head that was never written."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    await process_batch(entries(enrolment(client)), store, PROTOCOLS)
    snap = (await store.load({client: ["-"]}))[client]
    assert snap.state is not None
    await async_redis.hincrby(store.keys(client).state, "version", 1)  # another writer
    keys, v, head = store.keys(client), snap.version, snap.audit_head
    stored = encode_state(snap.state)
    first = Commit(keys, "e-1", v, head, stored, "{}", "h1", (), "clinic-a", "d1")
    second = Commit(keys, "e-2", v + 1, "h1", stored, "{}", "h2", (), "clinic-a", "d2")

    assert await store.commit([first, second]) == ["conflict", "conflict"]
    assert await async_redis.xlen(store.keys(client).audit) == 1


async def test_steps_run_after_the_server_lost_its_scripts(async_redis: aredis.Redis) -> None:
    """A restarted server has no scripts cached: the store loads them and runs the
    batch instead of failing it."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    await process_batch(entries(enrolment(client)), store, PROTOCOLS)
    await async_redis.script_flush()

    report = await process_batch(entries(session(client, 0)), store, PROTOCOLS)

    assert set(report.fates.values()) == {"applied"}
    assert await async_redis.xlen(store.keys(client).audit) == 2


async def test_an_error_reply_fails_the_call_and_the_connection_stays_in_step(
    async_redis: aredis.Redis,
) -> None:
    """One script call of several answers an error: it is raised, after every reply was
    read, so the next call on the same pooled connection gets its own replies."""
    store = RedisClientStore(async_redis, partitions=2)
    clients = [unique_client() for _ in range(40)]
    bad = next(c for c in clients if store.keys(c).partition == 0)
    enrolled, new = [c for c in clients if store.keys(c).partition == 1][:2]
    await process_batch(entries(enrolment(enrolled)), store, PROTOCOLS)
    await async_redis.set(store.keys(bad).state, "not a hash")
    try:
        with pytest.raises(aredis.ResponseError, match="WRONGTYPE"):
            await store.load({bad: ["-"], enrolled: ["-"]})  # the enrolled client's reply follows
        snapshot = (await store.load({new: ["-"]}))[new]
    finally:  # the server is shared: a client key that is not a hash breaks other readers
        await async_redis.delete(store.keys(bad).state)

    assert (snapshot.version, snapshot.state) == (0, None)


async def test_concurrent_batches_on_one_client_serialise_without_loss(
    async_redis: aredis.Redis, redis_url: str
) -> None:
    """Two gatekeepers working on one client: optimistic versions make one retry."""
    client = unique_client()
    store_a = RedisClientStore(async_redis, partitions=1)
    store_b = RedisClientStore(aredis.Redis.from_url(redis_url), partitions=1)
    await process_batch(entries(enrolment(client)), store_a, PROTOCOLS)
    first = entries(*(session(client, d) for d in range(0, 6)))
    second = entries(*(checkin(client, d) for d in range(1, 7)))

    await asyncio.gather(
        process_batch(first, store_a, PROTOCOLS), process_batch(second, store_b, PROTOCOLS)
    )

    assert int(await async_redis.hget(store_a.keys(client).state, "version")) == 13
    assert await async_redis.xlen(store_a.keys(client).audit) == 13
    state = (await store_a.load({client: ["-"]}))[client].state
    assert state is not None
    assert (state.applied, len(state.sessions), len(state.checkins)) == (12, 6, 6)
    assert [s.occurred_at for s in state.sessions] == sorted(s.occurred_at for s in state.sessions)
    await store_b.redis.aclose()


async def test_audit_entries_form_a_hash_chain(async_redis: aredis.Redis) -> None:
    """Each entry is stored compressed (well under its JSON's size); the chain is
    over the JSON."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    await process_batch(entries(enrolment(client), session(client, 0), checkin(client, 1)),
                        store, PROTOCOLS)  # fmt: skip

    previous = GENESIS
    for _, fields in await async_redis.xrange(store.keys(client).audit):
        body = decode_entry(fields[b"entry"])
        assert len(fields[b"entry"]) < len(body) / 4
        assert json.loads(body)["prev_hash"] == previous
        digest = hashlib.sha256((previous + body).encode()).hexdigest()
        assert fields[b"hash"].decode() == digest
        previous = digest
    assert (await async_redis.hget(store.keys(client).state, "audit_head")).decode() == previous


async def test_a_late_event_replays_the_committed_history_from_the_audit_trail(
    async_redis: aredis.Redis,
) -> None:
    """The stored state holds no event log; a late arrival loads it from the audit
    trail (committed events plus this batch's) and ends in the in-order state."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    days = [session(client, d) for d in range(4)]
    await process_batch(entries(enrolment(client), days[0], days[2]), store, PROTOCOLS)
    late_flare = session(client, 1, pain=7)

    report = await process_batch(entries(days[3], late_flare), store, PROTOCOLS)

    assert set(report.fates.values()) == {"applied"}
    decisions = await decisions_for(async_redis, client)
    assert decisions[-1].outcome == "flagged"
    assert decisions[-1].summary.startswith("late session.logged")
    state = (await store.load({client: ["-"]}))[client].state
    assert state is not None
    assert state.status == "flagged"
    assert state.applied == 4
    assert [s.pain_during for s in state.sessions] == [2, 7, 2, 2]
    raw = await async_redis.hget(store.keys(client).state, "state")
    assert b'"log"' not in raw  # the stored state stays small


async def test_a_session_read_before_its_enrolment_waits_instead_of_being_refused(
    async_redis: aredis.Redis,
) -> None:
    """Two gatekeepers can read a client's first session before its enrolment is
    applied; the session is deferred (left pending for the claimer), then applied."""
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    first_session = entries(session(client, 0))
    ids = {e.entry_id for e in first_session}

    early = await process_batch(first_session, store, PROTOCOLS, deferrable=ids)
    await process_batch(entries(enrolment(client)), store, PROTOCOLS)
    retried = await process_batch(first_session, store, PROTOCOLS, deferrable=ids)

    assert set(early.fates.values()) == {"deferred"}
    assert early.dead_letters == []
    assert set(retried.fates.values()) == {"applied"}
    assert [d.outcome for d in await decisions_for(async_redis, client)] == ["unlocked", "held"]
