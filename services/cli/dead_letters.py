"""`rehabgate dlq list|replay`: look at dead letters and re-drive them.

`list` prints each dead letter's id, source entry id, time and reason. The raw
payload may hold health data, so it is printed only on `--show-payload` (in
text or `--json` output alike).

`replay` puts a dead letter's raw payload back on its source stream, in the
field `event` as a clinic would, and deletes the dead letter, both in one
MULTI/EXEC under WATCH: a replay happens entirely or not at all, and two
operators replaying the same entry re-drive it once. The event is then
applied, or recognised as a duplicate when it had been applied meanwhile (its
event id is the idempotency key), or dead-lettered again with a fresh reason.
On Redis Cluster an inbound stream and its dead-letter stream live in different
slots, where no transaction reaches: there the payload is added first and the
dead letter deleted after, so a crash in between (or two operators at once)
re-drives the event twice, and the gatekeeper recognises the second as a
duplicate. Evaluated streams share their partition's hash tag with their dead
letters and replay in one transaction everywhere.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from rehabgate.schemas.streams import (
    EVENT_FIELD,
    INBOUND,
    INBOUND_DEAD_LETTER,
    evaluated_dead_letter_stream,
    evaluated_stream,
)
from rehabgate.services.common.connections import SyncRedisClient, sync_client
from rehabgate.services.common.settings import Settings

from .errors import CliError, positive_int, redis_url

KINDS = ("inbound", "evaluated")


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as an operator sees it (`raw` shown only on request)."""

    stream: str
    dead_letter_id: str
    source_id: str
    at: str
    reason: str
    raw: bytes


def dead_letter_streams(kind: str, partitions: int) -> dict[str, str]:
    """Dead-letter stream -> the stream its entries came from."""
    if kind == "inbound":
        return {INBOUND_DEAD_LETTER: INBOUND}
    return {evaluated_dead_letter_stream(p): evaluated_stream(p) for p in range(partitions)}


def list_dead_letters(
    client: SyncRedisClient, kind: str, partitions: int, limit: int
) -> tuple[list[DeadLetterView], int]:
    """The oldest `limit` dead letters of that kind, and how many there are in all."""
    found: list[DeadLetterView] = []
    total = 0
    for stream in dead_letter_streams(kind, partitions):
        total += client.xlen(stream)
        rows = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(stream, count=limit))
        found += [_dead_letter(stream, i.decode(), fields) for i, fields in rows]
    found.sort(key=lambda d: tuple(int(part) for part in d.dead_letter_id.split("-")))
    return found[:limit], total


def replay(
    client: SyncRedisClient, dead_letter_stream: str, source_stream: str, entry_id: str
) -> str | None:
    """Re-add the raw payload to `source_stream` and delete the dead letter in one
    transaction (on a cluster, across slots: in this order, see above); returns the
    new entry id, or None when there is no such dead letter."""
    if isinstance(client, RedisCluster):
        rows = cast(list[Any], client.xrange(dead_letter_stream, entry_id, entry_id))
        if not rows:
            return None
        target = _inbound_source(rows[0][1]) or source_stream
        if key_slot(target.encode()) != key_slot(dead_letter_stream.encode()):
            new_id = cast(bytes, client.xadd(target, {EVENT_FIELD: rows[0][1].get(b"raw", b"")}))
            client.xdel(dead_letter_stream, entry_id)
            return new_id.decode()
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(dead_letter_stream)
                rows = cast(list[Any], pipe.xrange(dead_letter_stream, entry_id, entry_id))
                if not rows:
                    return None
                pipe.multi()
                target = _inbound_source(rows[0][1]) or source_stream
                pipe.xadd(target, {EVENT_FIELD: rows[0][1].get(b"raw", b"")})
                pipe.xdel(dead_letter_stream, entry_id)
                new_id, _ = pipe.execute()
                return cast(bytes, new_id).decode()
            except redis.WatchError:
                continue  # a new dead letter arrived meanwhile: read again


def _inbound_source(fields: dict[bytes, bytes]) -> str | None:
    """A clinic's own inbound stream when the dead letter came from one (so a replay
    keeps its clinic). The replay carries no signature: a clinic that requires
    signed events refuses it, and the clinic re-sends instead."""
    source = fields.get(b"source_stream", b"").decode(errors="replace")
    return source if source.startswith(f"{INBOUND}:") and source != INBOUND_DEAD_LETTER else None


def configure(parser: argparse.ArgumentParser) -> None:
    """The arguments of `rehabgate dlq`."""
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters: id, source id, time, reason")
    listing.add_argument("--stream", choices=KINDS, default="inbound", help="which dead letters")
    listing.add_argument(
        "--limit", type=positive_int, default=50, help="at most this many (oldest first)"
    )
    listing.add_argument("--json", action="store_true", help="a JSON array instead of text")
    listing.add_argument(
        "--show-payload",
        action="store_true",
        help="also print raw payloads (may hold health data)",
    )
    replaying = actions.add_parser("replay", help="re-drive dead letters to their source stream")
    replaying.add_argument("entry_ids", nargs="*", metavar="ENTRY_ID", help="dead-letter ids")
    replaying.add_argument("--all", action="store_true", help="every dead letter of --stream")
    replaying.add_argument("--stream", choices=KINDS, default="inbound", help="which dead letters")


def command(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "replay" and bool(args.entry_ids) == args.all:
        raise CliError("rehabgate dlq replay: give dead-letter ENTRY_IDs or --all (not both)")
    url = redis_url(settings.redis_url, f"rehabgate dlq {args.action}")
    client = sync_client(url, settings.redis_cluster)
    try:
        if args.action == "list":
            return _list(client, args, settings.partitions)
        return _replay(client, args, settings.partitions)
    finally:
        client.close()


def _list(client: SyncRedisClient, args: argparse.Namespace, partitions: int) -> int:
    letters, total = list_dead_letters(client, args.stream, partitions, args.limit)
    if args.json:
        rows = [
            {"stream": d.stream, "dead_letter_id": d.dead_letter_id, "source_id": d.source_id,
             "dead_lettered_at": d.at, "reason": d.reason}
            | ({"raw": d.raw.decode(errors="replace")} if args.show_payload else {})
            for d in letters
        ]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{len(letters)} of {total} {args.stream} dead letters")
    for d in letters:
        print(f"{d.dead_letter_id}  source {d.source_id}  {d.at}  {d.reason}")
        if args.show_payload:
            print(f"    payload: {d.raw.decode(errors='replace')}")
    return 0


def _replay(client: SyncRedisClient, args: argparse.Namespace, partitions: int) -> int:
    streams = dead_letter_streams(args.stream, partitions)
    wanted: list[tuple[str, str]] = []  # (dead-letter stream, id)
    if args.all:
        for stream in streams:
            rows = cast(list[tuple[bytes, Any]], client.xrange(stream))
            wanted += [(stream, i.decode()) for i, _ in rows]
    missing = 0
    for entry_id in args.entry_ids:
        holder = next((s for s in streams if client.xrange(s, entry_id, entry_id)), None)
        if holder is None:
            print(f"not found: {entry_id}")
            missing += 1
        else:
            wanted.append((holder, entry_id))
    for stream, entry_id in wanted:
        new_id = replay(client, stream, streams[stream], entry_id)
        if new_id is None:
            print(f"not found: {entry_id} (replayed or deleted meanwhile)")
            missing += 1
        else:
            print(f"replayed {entry_id} -> {streams[stream]} {new_id}")
    return 1 if missing else 0


def _dead_letter(stream: str, entry_id: str, fields: dict[bytes, bytes]) -> DeadLetterView:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode(errors="replace")

    ms = int(entry_id.split("-")[0])
    at = text("dead_lettered_at") or datetime.fromtimestamp(ms / 1000, UTC).isoformat()
    return DeadLetterView(
        stream, entry_id, text("source_id"), at, text("reason"), fields.get(b"raw", b"")
    )
