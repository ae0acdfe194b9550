"""Erasure of one client (GDPR Art. 17): `rehabgate erase CLIENT`.

What goes: every key of the client (state, processed markers, audit trail,
contact details, owner), and every entry that mentions the client on every
stream: decisions (evaluated and its dead letters), client messages, receipts,
physio alerts, the outbox (queued messages, ledger entries), the inbound streams
and the inbound dead letters. What stays: the security events (ids and the
reason only, kept as evidence about the sender) and the erasure record.

The erasure record: each client has its own audit chain, so deleting a whole
chain cannot break any other client's; what must not vanish silently is the
fact of the erasure. So each partition keeps an erasure ledger
(`rehabgate:{pN}:erasures`), itself hash-chained exactly like a client's audit
trail (same entry format, head and count kept apart in `...:erasures:head`), so
the audit verifier checks it unchanged. Each entry is a tombstone: the client
id (a pseudonym), its clinic, when, and the erased chain's head hash and length,
so an archived copy of the trail (a legal hold) can still be proven to be the
chain that was erased, while nothing of its content is kept.

The inbound streams (outside the partition's hash slot, and on a cluster each in
a slot of its own) are cleaned first, so no waiting event of the client can
re-create it.
Then the partition's part (client keys, partition streams, outbox, ledger entry)
is one MULTI/EXEC under WATCH of the client's keys: a gatekeeper step that
commits meanwhile aborts it, and it is read and done again.
Erasing a client who is still being sent events leaves a race (a message the
notifier was sending); stop the clinic's events first, and re-run: erase is
idempotent and a run that finds nothing records nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis.exceptions import WatchError

from rehabgate.schemas.streams import (
    EVENT_FIELD,
    INBOUND,
    INBOUND_DEAD_LETTER,
    client_messages_stream,
    erasures_stream,
    evaluated_dead_letter_stream,
    evaluated_stream,
    physio_alerts_stream,
    receipts_stream,
)
from rehabgate.services.common.connections import RedisClient, RedisPipeline
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.audit.codec import decode_entry
from rehabgate.services.gatekeeper.audit.verify import Head, StoredEntry, Verdict, verify_chain
from rehabgate.services.gatekeeper.store import GENESIS, chain
from rehabgate.services.notifier.outbox.store import Outbox, ledger_key

PAGE = 1000


class ErasureConflict(RuntimeError):
    """The client kept changing while being erased: stop its events and retry."""


@dataclass
class Erasure:
    """What one run removed; `record_id` is its ledger entry (None: nothing found)."""

    client_id: str
    clinic_id: str | None = None
    removed: Counter[str] = field(default_factory=Counter)
    record_id: str | None = None


def erasures_head_key(partition: int) -> str:
    return f"{erasures_stream(partition)}:head"


def mentions(raw: bytes, client_id: str) -> bool:
    """Is this stored payload about `client_id`? JSON is read (escapes and all);
    a payload that is not JSON (a malformed dead letter) is searched as text."""
    try:
        document: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if isinstance(document, dict):
        return document.get("client_id") == client_id
    pattern = rb'"client_id"\s*:\s*"' + re.escape(client_id.encode()) + rb'"'
    return re.search(pattern, raw) is not None


async def _matching(
    redis: RedisClient | RedisPipeline, stream: str, client_id: str, fields: Sequence[bytes]
) -> list[tuple[str, bytes]]:
    """(entry id, payload) of every entry of `stream` about the client, page by page."""
    found: list[tuple[str, bytes]] = []
    start = "-"
    while True:
        rows = cast(list[Any], await redis.xrange(stream, start, "+", count=PAGE))
        for entry_id, values in rows:
            payload = next((values[f] for f in fields if f in values), b"")
            if mentions(payload, client_id):
                found.append((entry_id.decode(), payload))
        if len(rows) < PAGE:
            return found
        start = "(" + rows[-1][0].decode()


def _decision_ids(payloads: Sequence[bytes]) -> set[str]:
    ids = set()
    for raw in payloads:
        document = json.loads(raw)
        decision = document.get("decision") if "prev_hash" in document else document
        if isinstance(decision, dict) and isinstance(decision.get("decision_id"), str):
            ids.add(decision["decision_id"])
    return ids


async def erase_client(
    redis: RedisClient,
    client_id: str,
    partitions: int,
    ticket: str | None = None,
    attempts: int = 20,
) -> Erasure:
    """Erase the client everywhere; see the module docstring."""
    erasure = Erasure(client_id)
    # Inbound first: an event of the client still waiting there cannot re-create it.
    inbound = await _erase_inbound(redis, client_id)
    for _ in range(attempts):
        erasure.removed = Counter(inbound)
        try:
            await _erase_partition(redis, ClientKeys.of(client_id, partitions), ticket, erasure)
            return erasure
        except WatchError:
            continue
    raise ErasureConflict(f"client {client_id} kept changing; stop its events and retry")


async def _erase_partition(
    redis: RedisClient, keys: ClientKeys, ticket: str | None, erasure: Erasure
) -> None:
    p, client_id = keys.partition, keys.client_id
    outbox = Outbox(redis, p)
    own = [keys.state, keys.processed, keys.digests, keys.audit, keys.contact, keys.owner,
           keys.checkpoints]  # fmt: skip
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(*own, erasures_head_key(p))
        raw_state, version, head = cast(
            list[bytes | None], await pipe.hmget(keys.state, ["state", "version", "audit_head"])
        )
        owner = cast(bytes | None, await pipe.get(keys.owner))
        # TYPE, not EXISTS: a cluster pipeline cannot run EXISTS while watching.
        existing = [k for k in own if await pipe.type(k) != b"none"]
        audit = [f for _, f in await _matching_all(pipe, keys.audit)]
        streams = _partition_streams(p)
        found = {s: await _matching(pipe, s, client_id, [f]) for s, (f, _) in streams.items()}
        decided = [payload for _, payload in found[evaluated_stream(p)]]
        decisions = _decision_ids(audit) | _decision_ids(decided)
        messages = await _outbox_messages(redis, pipe, outbox, client_id)
        ledger_head, ledger_version = cast(
            list[bytes | None], await pipe.hmget(erasures_head_key(p), ["audit_head", "version"])
        )

        erasure.clinic_id = (
            owner.decode() if owner else _clinic_of(raw_state) if raw_state else None
        )
        erasure.removed.update({_kind(k, keys): 1 for k in existing})
        counts = {"audit_entries": len(audit), "outbox_messages": len(messages)}
        counts |= {streams[s][1]: len(entries) for s, entries in found.items()}
        erasure.removed.update({name: n for name, n in counts.items() if n})
        if not erasure.removed:
            return
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.delete(*own)
        for stream, entries in found.items():
            if entries:
                pipe.xdel(stream, *(entry_id for entry_id, _ in entries))
        pipe.hdel(outbox.open_key, client_id)
        if decisions:
            pipe.hdel(ledger_key(p), *decisions)
        if messages:
            pipe.zrem(outbox.due_key, *messages)
            pipe.zrem(outbox.sending_key, *messages)
            pipe.delete(*(outbox.message_key(m) for m in messages))
        seq = int(ledger_version or 0) + 1
        entry, entry_hash = chain(
            ledger_head.decode() if ledger_head else GENESIS,
            {
                "seq": str(seq),
                "event": json.dumps(
                    {
                        "event_type": "client.erased",
                        "erasure_id": str(uuid.uuid4()),
                        "client_id": client_id,
                        "clinic_id": erasure.clinic_id,
                        "erased_at": datetime.now(UTC).isoformat(),
                        "ticket": ticket,
                        "erased_chain_head": head.decode() if head else None,
                        "erased_chain_length": int(version or 0),
                        "removed": dict(sorted(erasure.removed.items())),
                    }
                ),
            },
        )
        pipe.xadd(erasures_stream(p), {"entry": entry, "hash": entry_hash})
        pipe.hset(erasures_head_key(p), mapping={"audit_head": entry_hash, "version": seq})
        replies = await pipe.execute()
        erasure.record_id = cast(bytes, replies[-2]).decode()


async def _matching_all(pipe: RedisPipeline, stream: str) -> list[tuple[str, bytes]]:
    """Every entry of a client's audit stream, as its JSON."""
    rows = cast(list[Any], await pipe.xrange(stream))
    return [(i.decode(), decode_entry(f.get(b"entry", b"{}")).encode()) for i, f in rows]


async def _outbox_messages(
    redis: RedisClient, pipe: RedisPipeline, outbox: Outbox, client_id: str
) -> list[str]:
    """Ids of the client's messages still in the outbox (queued or being sent). The
    SCAN goes through the client (on a cluster, to every primary; a watching
    pipeline is tied to one node), the reads through the watching pipeline."""
    found = []
    prefix = outbox.message_key("")
    async for key in redis.scan_iter(match=f"{_glob_escape(prefix)}*", count=PAGE):
        if await pipe.hget(key, "client") == client_id.encode():
            found.append(key.decode().removeprefix(prefix))
    return found


async def _erase_inbound(redis: RedisClient, client_id: str) -> Counter[str]:
    """The client's events still on inbound streams and among inbound dead letters."""
    streams = [
        key.decode()
        async for key in redis.scan_iter(match=f"{INBOUND}*", count=PAGE, _type="stream")
    ]
    fields = [EVENT_FIELD.encode(), b"raw"]
    found = {s: await _matching(redis, s, client_id, fields) for s in streams}
    found = {s: entries for s, entries in found.items() if entries}
    removed: Counter[str] = Counter()
    if not found:
        return removed
    async with redis.pipeline(transaction=False) as pipe:
        for stream, entries in found.items():
            pipe.xdel(stream, *(entry_id for entry_id, _ in entries))
        await pipe.execute()
    for stream, entries in found.items():
        kind = "inbound_dead_letters" if stream == INBOUND_DEAD_LETTER else "inbound_events"
        removed[kind] += len(entries)
    return removed


def _partition_streams(p: int) -> dict[str, tuple[bytes, str]]:
    """Stream -> (the field holding a payload, what its entries are called)."""
    return {
        evaluated_stream(p): (EVENT_FIELD.encode(), "decisions"),
        evaluated_dead_letter_stream(p): (b"raw", "decision_dead_letters"),
        client_messages_stream(p): (b"message", "client_messages"),
        receipts_stream(p): (EVENT_FIELD.encode(), "receipts"),
        physio_alerts_stream(p): (EVENT_FIELD.encode(), "physio_alerts"),
    }


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _kind(key: str, keys: ClientKeys) -> str:
    return {
        keys.state: "state",
        keys.processed: "processed_markers",
        keys.digests: "content_digests",
        keys.audit: "audit_trail",
        keys.contact: "contact_details",
        keys.owner: "owner",
        keys.checkpoints: "checkpoints",
    }[key]


def _clinic_of(raw_state: bytes) -> str | None:
    clinic = json.loads(raw_state).get("clinic_id")
    return clinic if isinstance(clinic, str) else None


async def verify_erasures(redis: RedisClient, partition: int) -> Verdict:
    """The erasure ledger of one partition, checked by the audit verifier itself."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xrange(erasures_stream(partition))
        pipe.hmget(erasures_head_key(partition), ["audit_head", "version"])
        rows, (head, version) = await pipe.execute()
    entries = [StoredEntry(i.decode(), f[b"entry"].decode(), f[b"hash"].decode()) for i, f in rows]
    return verify_chain(entries, Head(head.decode() if head else None, int(version or 0)))
