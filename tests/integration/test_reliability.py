"""Issue 4, service side: nothing retried forever, dead letters can be re-driven,
trimming never loses what a consumer group still owes, dead consumers are pruned
without losing their entries, and a lost consumer group costs nothing."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import redis.asyncio as aredis

from rehabgate.schemas.inbound import ClientEnrolled
from rehabgate.schemas.outbound import ClientMessage, ProgressionEvaluated
from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    INBOUND_DEAD_LETTER,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_dead_letter_stream,
    evaluated_stream,
)
from rehabgate.services.cli.health import check
from rehabgate.services.cli.main import main
from rehabgate.services.common.consuming import prune_idle_consumers
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.retention import trim_stream
from rehabgate.services.gatekeeper.domain import enroll
from rehabgate.services.gatekeeper.process import Entry, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import RedisClientStore
from tests.events import checkin, enrolment, session, unique_client
from tests.waiting import caught_up, wait_for, wait_for_async

pytestmark = pytest.mark.integration
PROTOCOLS = load_protocols()
DAY_MS = 24 * 3600 * 1000


@contextmanager
def service(name: str, redis_url: str, log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """One service process (`rehabgate gatekeeper|notifier`), JSON logs to `log`;
    stopped with SIGTERM at the end unless it already exited."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rehabgate.services.cli.main", name],
            env={**os.environ, "REDIS_URL": redis_url, "REHABGATE_LOG_JSON": "true", **env},
            stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise


def ensure_group(r: redis.Redis, stream: str, group: str) -> None:
    with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists already
        r.xgroup_create(stream, group, id="0", mkstream=True)


# --- delivery cap -------------------------------------------------------------


@pytest.mark.slow
def test_notifier_claimer_dead_letters_a_decision_after_max_deliveries(
    redis_url: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    stream, dead = evaluated_stream(0), evaluated_dead_letter_stream(0)
    ensure_group(sync_redis, stream, NOTIFIER_GROUP)
    client = unique_client()
    evaluation = enroll(
        PROTOCOLS["achilles-tendinopathy@1"], None,
        ClientEnrolled.model_validate(enrolment(client)),
    ).evaluation  # fmt: skip
    assert evaluation is not None
    raw = evaluation.model_dump_json().encode()
    entry_id = sync_redis.xadd(stream, {"event": raw}).decode()
    # A notifier took it and died, then a claimer took it and died too: 2 deliveries.
    # (Anything else unread goes pending on the ghost too; the claimer delivers it.)
    sync_redis.xreadgroup(NOTIFIER_GROUP, "ghost", {stream: ">"})
    sync_redis.xclaim(stream, NOTIFIER_GROUP, "ghost", 0, [entry_id])

    with service(
        "notifier", redis_url, tmp_path / "notifier.log",
        REHABGATE_CONSUMER=f"cap-{uuid.uuid4().hex[:8]}",
        REHABGATE_MAX_DELIVERIES="2", REHABGATE_CLAIM_IDLE_MS="100",
    ) as notifier:  # fmt: skip
        letter = wait_for(
            lambda: [
                f for _, f in sync_redis.xrange(dead) if f[b"source_id"] == entry_id.encode()
            ],
            what="the dead letter",
        )
        assert notifier.poll() is None

    assert letter[0][b"reason"] == b"gave up after 2 deliveries"
    assert letter[0][b"raw"] == raw
    assert letter[0][b"source_stream"] == stream.encode()
    assert sync_redis.xpending_range(stream, NOTIFIER_GROUP, entry_id, entry_id, 1) == []
    sent = [ClientMessage.model_validate_json(f[b"message"])
            for _, f in sync_redis.xrange(client_messages_stream(0))]  # fmt: skip
    assert [m for m in sent if m.client_id == client] == []


# --- dead-letter list and replay ------------------------------------------------


async def test_dlq_list_hides_payloads_and_replay_re_drives_the_entry(
    async_redis: aredis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    store = RedisClientStore(async_redis, partitions=1)
    client = unique_client()
    early = session(client, 0, pain=7)  # arrives before the client is enrolled
    raw = json.dumps(early)
    report = await process_batch([Entry("1-1", {b"event": raw.encode()})], store, PROTOCOLS)
    assert report.fates == {"1-1": "dead_lettered"}
    dead_id = next(i.decode() for i, f in await async_redis.xrevrange(INBOUND_DEAD_LETTER)
                   if f[b"raw"] == raw.encode())  # fmt: skip

    assert main(["dlq", "list", "--limit", "1000000"]) == 0
    text = capsys.readouterr().out
    (line,) = [ln for ln in text.splitlines() if ln.startswith(dead_id)]
    assert line.startswith(f"{dead_id}  source 1-1  ")
    assert "unknown client" in line
    assert "pain_during" not in line
    assert early["event_id"] not in text
    assert "payload" not in text

    assert main(["dlq", "list", "--json", "--limit", "1000000"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["dead_letter_id"] == dead_id]
    assert "raw" not in row
    assert row["reason"].startswith("unknown client")
    assert main(["dlq", "list", "--json", "--show-payload", "--limit", "1000000"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out) if r["dead_letter_id"] == dead_id]
    assert row["raw"] == raw

    await process_batch([Entry("1-2", {b"event": json.dumps(enrolment(client)).encode()})],
                        store, PROTOCOLS)  # fmt: skip
    assert main(["dlq", "replay", dead_id]) == 0
    replayed = capsys.readouterr().out.strip()
    assert replayed.startswith(f"replayed {dead_id} -> {INBOUND} ")
    new_id = replayed.rsplit(" ", 1)[1]
    assert await async_redis.xrange(INBOUND_DEAD_LETTER, dead_id, dead_id) == []
    ((_, fields),) = await async_redis.xrange(INBOUND, new_id, new_id)
    assert fields == {b"event": raw.encode()}

    report = await process_batch([Entry(new_id, fields)], store, PROTOCOLS)

    assert report.fates == {new_id: "applied"}
    assert await async_redis.sismember(ClientKeys.of(client, 1).processed, early["event_id"])
    assert main(["dlq", "replay", dead_id]) == 1  # once only
    assert "not found" in capsys.readouterr().out


def test_dlq_replay_wants_ids_or_all(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["dlq", "replay"]) == 2
    assert main(["dlq", "replay", "1-0", "--all"]) == 2
    assert "ENTRY_IDs or --all" in capsys.readouterr().err


# --- retention ----------------------------------------------------------------


async def old_entries(r: aredis.Redis, stream: str, count: int, days_ago: int = 10) -> list[str]:
    """`count` entries whose ids say they were written `days_ago` days ago."""
    seconds, micros = await r.time()
    start = seconds * 1000 + micros // 1000 - days_ago * DAY_MS
    return [(await r.xadd(stream, {"n": i}, id=f"{start + i}-0")).decode() for i in range(count)]


async def ids(r: aredis.Redis, stream: str) -> list[str]:
    return [i.decode() for i, _ in await r.xrange(stream)]


async def test_trim_never_removes_what_a_group_has_pending_or_not_yet_read(
    async_redis: aredis.Redis,
) -> None:
    r, stream = async_redis, f"test:{uuid.uuid4().hex}:work"
    e = await old_entries(r, stream, 6)
    await r.xgroup_create(stream, "slow", id="0")
    await r.xgroup_create(stream, "fast", id="0")
    await r.xreadgroup("fast", "f", {stream: ">"})
    await r.xack(stream, "fast", *e)
    await r.xreadgroup("slow", "s", {stream: ">"}, count=3)
    await r.xack(stream, "slow", e[0])  # e[1], e[2] pending; e[3:] unread

    first = await trim_stream(r, stream, retention_s=0)
    assert (first.removed, first.below) == (1, e[1])
    assert await ids(r, stream) == e[1:]

    await r.xack(stream, "slow", e[1], e[2])
    second = await trim_stream(r, stream, retention_s=0)
    assert second.removed == 2
    assert await ids(r, stream) == e[3:]  # "slow" has not read them yet

    await r.xgroup_create(stream, "new", id="0")  # e.g. recreated after a loss
    assert (await trim_stream(r, stream, retention_s=0)).removed == 0
    assert await ids(r, stream) == e[3:]


async def test_trim_removes_acked_entries_only_beyond_the_retention_window(
    async_redis: aredis.Redis,
) -> None:
    r, stream = async_redis, f"test:{uuid.uuid4().hex}:work"
    old = await old_entries(r, stream, 3, days_ago=8)
    recent = [(await r.xadd(stream, {"n": i})).decode() for i in range(2)]
    await r.xgroup_create(stream, "g", id="0")
    await r.xreadgroup("g", "c", {stream: ">"})
    await r.xack(stream, "g", *old, *recent)

    trimmed = await trim_stream(r, stream, retention_s=7 * 24 * 3600)

    assert trimmed.removed == 3
    assert await ids(r, stream) == recent
    assert (await trim_stream(r, stream, retention_s=7 * 24 * 3600)).removed == 0


async def test_trim_leaves_streams_without_a_consumer_group_alone(
    async_redis: aredis.Redis,
) -> None:
    r, stream = async_redis, f"test:{uuid.uuid4().hex}:output"
    await old_entries(r, stream, 3)

    assert (await trim_stream(r, stream, retention_s=0)).removed is None
    assert await r.xlen(stream) == 3
    assert (await trim_stream(r, f"{stream}:missing", retention_s=0)).removed is None
    with pytest.raises(ValueError, match="audit"):
        await trim_stream(r, ClientKeys.of("c-1", 1).audit, retention_s=0)


def test_trim_command_prints_each_work_stream(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REHABGATE_PARTITIONS", "2")

    assert main(["trim"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        INBOUND, evaluated_stream(0), evaluated_stream(1),
    ]  # fmt: skip
    for line in lines:
        assert " removed " in line or line.endswith("left alone (no consumer group)")


# --- consumer pruning ---------------------------------------------------------


async def test_pruning_deletes_idle_consumers_but_keeps_those_with_pending_entries(
    async_redis: aredis.Redis,
) -> None:
    r, stream = async_redis, f"test:{uuid.uuid4().hex}:work"
    for i in range(3):
        await r.xadd(stream, {"n": i})
    await r.xgroup_create(stream, "g", id="0")
    await r.xreadgroup("g", "crashed", {stream: ">"}, count=1)  # still pending
    ((_, [(done_id, _)]),) = await r.xreadgroup("g", "finished", {stream: ">"}, count=1)
    await r.xack(stream, "g", done_id)

    async def finished_long_idle() -> bool:
        consumers = {c["name"].decode(): c for c in await r.xinfo_consumers(stream, "g")}
        return bool(consumers["finished"]["idle"] >= 2 * limit_ms)

    # Idle by the server's clock, not a fixed sleep: "finished" well past the limit,
    # then "recent" active, with the limit's whole width as margin for a slow machine.
    limit_ms = 1500
    await wait_for_async(finished_long_idle, every=0.2, what="an idle consumer")
    ((_, [(busy_id, _)]),) = await r.xreadgroup("g", "recent", {stream: ">"}, count=1)
    await r.xack(stream, "g", busy_id)

    deleted = await prune_idle_consumers(r, stream, "g", min_idle_ms=limit_ms)

    assert deleted == ["finished"]
    consumers = {c["name"].decode(): c["pending"] for c in await r.xinfo_consumers(stream, "g")}
    assert consumers == {"crashed": 1, "recent": 0}


# --- consumer-group loss ------------------------------------------------------


@pytest.mark.slow
def test_lost_group_fails_health_exits_non_zero_and_a_restart_applies_each_event_once(
    redis_url: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    consumer = f"grouploss-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "gatekeeper.log"
    client = unique_client()
    events = [enrolment(client), session(client, 0), checkin(client, 1)]
    keys = ClientKeys.of(client, 1)

    with service("gatekeeper", redis_url, log, REHABGATE_CONSUMER=consumer) as first:
        wait_for(lambda: check(redis_url, "gatekeeper", consumer)[0], what="a healthy gatekeeper")
        for e in events[:2]:
            sync_redis.xadd(INBOUND, {"event": json.dumps(e)})
        wait_for(lambda: sync_redis.scard(keys.processed) == 2, what="both events applied")

        sync_redis.xgroup_destroy(INBOUND, GATEKEEPER_GROUP)

        assert first.wait(timeout=120) != 0
    assert '"event": "consumer_group_lost"' in log.read_text()
    assert not check(redis_url, "gatekeeper", consumer)[0]
    sync_redis.xadd(INBOUND, {"event": json.dumps(events[2])})  # while it is down

    # The recreated group re-reads the whole shared stream, other tests' entries
    # too; events of never-enrolled clients among them wait for their enrolment
    # (claimer retries), so retry fast here.
    fast = {"REHABGATE_CLAIM_IDLE_MS": "200", "REHABGATE_MAX_DELIVERIES": "2"}
    with service("gatekeeper", redis_url, log, REHABGATE_CONSUMER=consumer, **fast) as second:
        wait_for(lambda: check(redis_url, "gatekeeper", consumer)[0], what="a healthy gatekeeper")
        wait_for(lambda: caught_up(sync_redis, INBOUND, GATEKEEPER_GROUP), timeout=180,
                 what="the recreated group to catch up")  # fmt: skip
        assert second.poll() is None

    assert second.returncode == 0
    assert {m.decode() for m in sync_redis.smembers(keys.processed)} == {
        e["event_id"] for e in events
    }
    causes = Counter(
        str(d.cause_event_id)
        for d in (ProgressionEvaluated.model_validate_json(f[b"event"])
                  for _, f in sync_redis.xrange(evaluated_stream(0)))
        if d.client_id == client
    )  # fmt: skip
    assert causes == {e["event_id"]: 1 for e in events}
    assert sync_redis.xlen(keys.audit) == 3
