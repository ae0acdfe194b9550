"""Hostile input, on a real server: every bad entry is dead-lettered alone with a
reason that names its problem, in the same delivery as the good entries around it,
and nothing changes state silently (issue 15)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import INBOUND_DEAD_LETTER, evaluated_stream
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.domain import Protocol
from rehabgate.services.gatekeeper.process import Entry, Report, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import DeadLetter, RedisClientStore
from tests.events import T0, enrolment, session, unique_client

pytestmark = pytest.mark.integration
PROTOCOLS = load_protocols()
_seq = iter(range(1, 10**9))
#: The server's clock for the time window: a month after the histories' T0.
NOW = (T0 + timedelta(days=30)).timestamp()


def entry(raw: bytes | dict[str, Any], **fields: bytes) -> Entry:
    body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return Entry(f"{time.time_ns()}-{next(_seq)}", {b"event": body, **fields})


async def run(r: aredis.Redis, *batch: Entry, protocols: Any = PROTOCOLS) -> Report:
    return await process_batch(list(batch), RedisClientStore(r, 1), protocols, now=NOW)


async def letters(r: aredis.Redis, *entry_ids: str) -> dict[str, list[dict[bytes, bytes]]]:
    found: dict[str, list[dict[bytes, bytes]]] = {i: [] for i in entry_ids}
    for _, fields in await r.xrange(INBOUND_DEAD_LETTER):
        source = fields[b"source_id"].decode()
        if source in found:
            found[source].append(fields)
    return found


async def decisions_of(r: aredis.Redis, client_id: str) -> list[ProgressionEvaluated]:
    out = []
    for _, fields in await r.xrange(evaluated_stream(0)):
        decision = ProgressionEvaluated.model_validate_json(fields[b"event"])
        if decision.client_id == client_id:
            out.append(decision)
    return out


def deep(depth: int) -> bytes:
    return b'{"event": ' + b"[" * depth + b"]" * depth + b"}"


def with_(event: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**event, **changes}


# One row per "Why" bullet of the issue: a hostile entry for an enrolled client, and
# the words its dead letter's reason must contain.
HOSTILE: list[tuple[str, Callable[[str], bytes | dict[str, Any]], str]] = [
    ("nested 10,000 deep", lambda c: deep(10_000), "malformed JSON"),
    ("not UTF-8", lambda c: b'{"event_id": "\xff\xfe"}', "malformed JSON"),
    ("dated 9999", lambda c: with_(session(c, 1), occurred_at="9999-12-31T23:30:00-01:00"),
     "after the server's clock"),
    ("dated year 1", lambda c: with_(session(c, 1), occurred_at="0001-01-01T00:30:00+01:00"),
     "is before 2000-01-01"),
    ("dated 1900", lambda c: with_(session(c, 1), occurred_at="1900-05-01T10:00:00+00:00"),
     "is before 2000-01-01"),
    ("dated 2030", lambda c: with_(session(c, 1), occurred_at="2030-01-01T10:00:00+00:00"),
     "after the server's clock"),
    ("before the enrolment", lambda c: with_(session(c, 1), occurred_at="2026-05-01T10:00:00+00:00"),
     "before the client's enrolment"),
    ("pain as a string", lambda c: with_(session(c, 1), pain_during="3"),
     "pain_during: Input should be a valid integer"),
    ("pain as true", lambda c: with_(session(c, 1), pain_during=True),
     "pain_during: Input should be a valid integer"),
    ("completed as yes", lambda c: with_(session(c, 1), completed="yes"),
     "completed: Input should be a valid boolean"),
    ("one megabyte", lambda c: with_(session(c, 1), session_id="x" * 1_000_000),
     "entry too large"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_entry_is_dead_lettered_alone_and_its_batch_applied(
    async_redis: aredis.Redis, name: str, make: Callable[[str], Any], reason: str
) -> None:
    client = unique_client()
    await run(async_redis, entry(enrolment(client)))
    before, bad, after = entry(session(client, 1)), entry(make(client)), entry(session(client, 2))

    report = await run(async_redis, before, bad, after)

    assert report.fates == {
        before.entry_id: "applied", bad.entry_id: "dead_lettered", after.entry_id: "applied"
    }  # fmt: skip
    [letter] = (await letters(async_redis, bad.entry_id))[bad.entry_id]
    assert reason in letter[b"reason"].decode()
    assert len(await decisions_of(async_redis, client)) == 3  # enrolment + the two good ones


async def test_a_later_event_of_a_client_is_not_broken_by_an_extreme_date(
    async_redis: aredis.Redis,
) -> None:
    """Before: an enrolment dated 9999 was applied, and every later event of the
    client raised OverflowError and was retried until given up."""
    client = unique_client()
    extreme = entry(with_(enrolment(client), occurred_at="9999-12-31T23:30:00-01:00"))
    report = await run(async_redis, extreme)
    assert report.fates[extreme.entry_id] == "dead_lettered"

    fine = entry(enrolment(client))
    assert (await run(async_redis, fine, entry(session(client, 1)))).fates[fine.entry_id] == (
        "applied"
    )


async def test_an_event_id_reused_with_other_content_is_refused_not_a_duplicate(
    async_redis: aredis.Redis,
) -> None:
    client = unique_client()
    await run(async_redis, entry(enrolment(client)))
    original = session(client, 1, pain=3)
    await run(async_redis, entry(original))

    same = entry(original)
    # the same content re-sent, keys in another order: still a duplicate
    reordered = entry(json.dumps(dict(reversed(original.items()))).encode())
    other = entry(with_(original, pain_during=9))
    report = await run(async_redis, same, reordered, other)

    assert report.fates[same.entry_id] == "duplicate"
    assert report.fates[reordered.entry_id] == "duplicate"
    assert report.fates[other.entry_id] == "dead_lettered"
    [letter] = (await letters(async_redis, other.entry_id))[other.entry_id]
    assert letter[b"reason"].startswith(b"event id reused with different content")


async def test_an_event_id_reused_within_one_batch_is_refused_too(
    async_redis: aredis.Redis,
) -> None:
    client = unique_client()
    await run(async_redis, entry(enrolment(client)))
    first = session(client, 1, pain=3)
    one, two = entry(first), entry(with_(first, pain_during=9))

    report = await run(async_redis, one, two)

    assert report.fates == {one.entry_id: "applied", two.entry_id: "dead_lettered"}


async def test_two_clients_sharing_an_event_id_get_their_own_decision_ids(
    async_redis: aredis.Redis,
) -> None:
    shared = str(uuid.uuid4())
    first, second = unique_client(), unique_client()
    report = await run(
        async_redis,
        entry(with_(enrolment(first), event_id=shared)),
        entry(with_(enrolment(second), event_id=shared)),
    )

    assert set(report.fates.values()) == {"applied"}
    [one] = await decisions_of(async_redis, first)
    [two] = await decisions_of(async_redis, second)
    assert one.decision_id != two.decision_id


async def test_a_huge_entry_leaves_a_bounded_dead_letter_with_its_size_and_hash(
    async_redis: aredis.Redis,
) -> None:
    raw = json.dumps(with_(session(unique_client(), 1), session_id="y" * 3_000_000)).encode()
    bad = entry(raw)

    await run(async_redis, bad)

    [letter] = (await letters(async_redis, bad.entry_id))[bad.entry_id]
    assert len(letter[b"raw"]) == 65_536
    assert raw.startswith(letter[b"raw"])
    assert int(letter[b"raw_bytes"]) == len(raw)
    assert letter[b"raw_sha256"].decode() == hashlib.sha256(raw).hexdigest()
    assert letter[b"raw_truncated"] == b"1"


async def test_dead_lettering_an_entry_twice_leaves_one_dead_letter(
    async_redis: aredis.Redis,
) -> None:
    """A crash between the dead letter and the ack redelivers the entry."""
    store = RedisClientStore(async_redis, 1)
    letter = DeadLetter(f"{time.time_ns()}-0", "malformed JSON: test", b"{oops")

    await store.dead_letter([letter])
    await store.dead_letter([letter])  # the redelivery after a crash

    assert len((await letters(async_redis, letter.entry_id))[letter.entry_id]) == 1


async def test_an_unreadable_stored_state_fails_only_that_clients_events(
    async_redis: aredis.Redis,
) -> None:
    odd, fine = unique_client(), unique_client()
    store = RedisClientStore(async_redis, 1)
    await run(async_redis, entry(enrolment(odd)), entry(enrolment(fine)))
    await async_redis.hset(store.keys(odd).state, "state", '{"not": "a state"}')

    bad, good = entry(session(odd, 1)), entry(session(fine, 1))
    try:
        report = await run(async_redis, bad, good)
    finally:  # the server is shared: the physio overview of later tests reads it
        await async_redis.delete(*vars_of(store.keys(odd)))

    assert report.fates == {bad.entry_id: "dead_lettered", good.entry_id: "applied"}
    [letter] = (await letters(async_redis, bad.entry_id))[bad.entry_id]
    assert b"stored state cannot be read" in letter[b"reason"]


def vars_of(keys: ClientKeys) -> list[str]:
    return [keys.state, keys.processed, keys.digests, keys.audit, keys.owner]


class ExplodingProtocols(dict[str, Protocol]):
    """Protocols whose lookup fails unexpectedly for one of them: the stand-in for any
    bug that raises while one event is decided."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key == "strength-block-6wk@1":
            raise RecursionError("deep inside a rule")
        return super().get(key, default)


async def test_an_unexpected_error_while_deciding_fails_only_that_entry(
    async_redis: aredis.Redis,
) -> None:
    protocols = ExplodingProtocols(PROTOCOLS)
    odd, fine = unique_client(), unique_client()
    bad = entry(enrolment(odd, protocol="strength-block-6wk@1"))
    good = entry(enrolment(fine))

    report = await run(async_redis, bad, good, protocols=protocols)

    assert report.fates == {bad.entry_id: "dead_lettered", good.entry_id: "applied"}
    [letter] = (await letters(async_redis, bad.entry_id))[bad.entry_id]
    assert b"could not evaluate this event (RecursionError)" in letter[b"reason"]
    assert b"deep inside" not in letter[b"reason"]  # the error's text may quote data


# --- generated: hostile entries interleaved with good ones --------------------------

BOUNDARY_PAIN = st.sampled_from([-1, 11, 10.5, "10", None, [], {}, 2**63])
HOSTILE_ENTRY = st.one_of(
    st.integers(min_value=50, max_value=20_000).map(lambda n: ("json", deep(n))),
    st.binary(min_size=1, max_size=64).filter(lambda b: not b.strip().startswith(b"{")).map(
        lambda b: ("json", b)
    ),
    BOUNDARY_PAIN.map(lambda p: ("schema", {"pain_during": p})),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59+00:00",
                     "2099-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00"]).map(
        lambda t: ("time", {"occurred_at": t})
    ),
    st.integers(min_value=65_537, max_value=300_000).map(lambda n: ("size", {"session_id": "z" * n})),
    st.just(("reused", {})),
)  # fmt: skip
REASONS = {
    "json": ("malformed JSON", "schema violation"),
    "schema": ("schema violation",),
    "time": ("occurred_at",),
    "size": ("entry too large",),
    "reused": ("event id reused with different content",),
}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=st.lists(st.one_of(st.none(), HOSTILE_ENTRY), min_size=1, max_size=12))
def test_generated_hostile_entries_never_hold_back_good_ones(
    redis_url: str, plan: list[tuple[str, Any] | None]
) -> None:
    """`None` in the plan is a good session; anything else is hostile. One delivery
    applies every good event and dead-letters every hostile one exactly once."""

    async def scenario() -> None:
        r = aredis.Redis.from_url(redis_url)
        try:
            client = unique_client()
            await run(r, entry(enrolment(client)))
            applied = session(client, 1, pain=3)
            await run(r, entry(applied))
            batch: list[tuple[Entry, str | None]] = []
            for day, step in enumerate(plan, start=2):
                good = session(client, day)
                if step is None:
                    batch.append((entry(good), None))
                    continue
                kind, change = step
                if kind == "json":
                    batch.append((entry(change), kind))
                elif kind == "reused":
                    batch.append((entry(with_(applied, pain_during=8)), kind))
                else:
                    batch.append((entry(with_(good, **change)), kind))

            report = await run(r, *(e for e, _ in batch))

            found = await letters(r, *(e.entry_id for e, _ in batch))
            for e, kind in batch:
                if kind is None:
                    assert report.fates[e.entry_id] == "applied"
                    assert found[e.entry_id] == []
                else:
                    assert report.fates[e.entry_id] == "dead_lettered", kind
                    [letter] = found[e.entry_id]
                    reason = letter[b"reason"].decode()
                    assert any(words in reason for words in REASONS[kind]), (kind, reason)
        finally:
            await r.aclose()

    asyncio.run(scenario())


# --- a real gatekeeper: memory after huge entries ------------------------------------


@pytest.mark.slow
def test_the_gatekeeper_stays_small_after_20_mb_entries(tmp_path: Path) -> None:
    """On a private server, so the measure is this gatekeeper's own (a shared one
    makes a new gatekeeper take over every earlier test's backlog)."""
    from rehabgate.schemas.streams import INBOUND
    from rehabgate.services.cli.stack import Stack
    from rehabgate.services.common.redis_server import EmbeddedRedis
    from tests.waiting import wait_for

    with (
        EmbeddedRedis(data_dir=tmp_path / "redis", appendonly=False) as server,
        Stack(server.url, data_dir=None, log_dir=tmp_path) as stack,
    ):
        r = redis.Redis.from_url(server.url)
        client = unique_client()
        stack_now = datetime.now(UTC).isoformat()
        huge = [
            r.xadd(INBOUND, {"event": b'{"pad": "' + b"x" * 20_000_000 + b'"}'}) for _ in range(3)
        ]
        r.xadd(INBOUND, {"event": json.dumps(with_(enrolment(client), occurred_at=stack_now))})

        def all_handled() -> bool:
            sources = {f[b"source_id"] for _, f in r.xrange(INBOUND_DEAD_LETTER)}
            return all(h in sources for h in huge) and any(
                client.encode() in f[b"event"] for _, f in r.xrange(evaluated_stream(0))
            )

        wait_for(all_handled, timeout=180, what="the huge entries' dead letters and the enrolment")
        pid = stack.processes["gatekeeper"].pid

        def rss_mb() -> float:
            status = Path(f"/proc/{pid}/status").read_text()
            return int(next(line.split()[1] for line in status.splitlines()
                            if line.startswith("VmRSS"))) / 1024  # fmt: skip

        # The memory a huge entry took is given back once its batch is done
        # (common/memory.py): what stays is what must stay under the limit.
        wait_for(lambda: rss_mb() < 150, what="the gatekeeper's RSS under 150 MB")
        for _, fields in r.xrange(INBOUND_DEAD_LETTER):
            assert len(fields[b"raw"]) <= 65_536
        r.close()


async def test_an_entry_past_its_delivery_cap_is_dead_lettered_once_across_a_crash(
    async_redis: aredis.Redis,
) -> None:
    """The claimer's cap: the letter is written, the process dies before the XACK, the
    entry comes round again: still one dead letter."""
    from rehabgate.services.common.consuming import dead_letter_exhausted, ensure_group
    from rehabgate.services.common.metrics import GatekeeperMetrics

    stream, group = f"test:cap:{uuid.uuid4().hex[:8]}", "g"
    await ensure_group(async_redis, stream, group)
    entry_id = (await async_redis.xadd(stream, {"event": b"{}"})).decode()
    for consumer in ("a", "b", "c"):  # three deliveries
        await async_redis.xreadgroup(group, consumer, {stream: ">" if consumer == "a" else "0"})
        await async_redis.xclaim(stream, group, consumer, 0, [entry_id])
    fields = {b"event": b"{}"}
    log = structlog.get_logger("test")

    async def cap() -> None:
        await dead_letter_exhausted(
            async_redis, [(entry_id, fields)], stream=stream, group=group,
            dead_letter_stream=INBOUND_DEAD_LETTER, max_deliveries=2, log=log,
            metrics=GatekeeperMetrics(),
        )  # fmt: skip

    await cap()
    # the XACK is lost with the process: the entry is still pending, delivered again
    await async_redis.xclaim(stream, group, "d", 0, [entry_id], force=True, retrycount=4)
    [pending] = await async_redis.xpending_range(stream, group, entry_id, entry_id, 1)
    assert pending["times_delivered"] > 2
    await cap()

    found = (await letters(async_redis, entry_id))[entry_id]
    assert [f[b"reason"] for f in found] == [b"gave up after 2 deliveries"]
