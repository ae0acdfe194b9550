"""What became of an accepted event: the answer of `GET /v1/events/{event_id}`.

The ingest's record of the event id (accept.py) names its stream entry and client;
from there, in this order:

- **dead_lettered**: the gatekeeper's once-only marker of the entry exists; the
  reason is read from the dead letter (found from the entry's time on).
- **pending** / **deferred**: the entry is unread, or read and not yet acknowledged
  by the gatekeeper's group; deferred when its client is not enrolled yet (the
  gatekeeper keeps such an entry pending until the enrolment arrives).
- **applied**: the event id is in the client's processed set; its decision (id,
  outcome, stage) is read from the client's audit trail when it had one.
  That holds too when the event was applied through the Redis path first and the
  posted entry was taken for a duplicate: the event is applied, whichever way in.
- **duplicate**: acknowledged, neither applied nor dead-lettered (as when the
  client was erased since).

Only the caller's clinic's records are looked at, so another clinic's event id is
as unknown as one never posted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from redis.exceptions import RedisError

from rehabgate.schemas.streams import GATEKEEPER_GROUP, INBOUND_DEAD_LETTER
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.audit.codec import decode_entry

from .accept import record_key

#: How far before an entry's time to look for its dead letter or audit entry (clock
#: differences between Redis nodes), and how many entries to look through at most.
SKEW_MS = 5_000
SCAN_PAGE = 500
SCAN_LIMIT = 20_000


@dataclass(frozen=True)
class FateAnswer:
    event_id: str
    entry_id: str
    fate: str
    reason: str | None = None
    decision: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event_id": self.event_id, "entry_id": self.entry_id}
        body["fate"] = self.fate
        if self.reason is not None:
            body["reason"] = self.reason
        if self.fate == "applied":
            body["decision"] = self.decision
        return body


def dead_letter_marker(stream: str, entry_id: str) -> str:
    """The gatekeeper's marker of a dead-lettered entry (common/dead_letters.py)."""
    return f"{{{INBOUND_DEAD_LETTER}}}:lettered:{stream}:{entry_id}"


async def fate_of(
    redis: RedisClient, stream: str, clinic_id: str, event_id: str, partitions: int
) -> FateAnswer | None:
    """The fate of one of this clinic's event ids; None when it is not known."""
    record = cast(dict[bytes, bytes], await redis.hgetall(record_key(stream, clinic_id, event_id)))
    if not record:
        return None
    entry_id = record[b"entry_id"].decode()
    client_id = record.get(b"client_id", b"").decode()
    event_type = record.get(b"event_type", b"").decode()
    keys = ClientKeys.of(client_id, partitions)
    if await redis.exists(dead_letter_marker(stream, entry_id)):
        return FateAnswer(
            event_id, entry_id, "dead_lettered", await _reason(redis, stream, entry_id)
        )
    progress = await _progress(redis, stream, entry_id)
    if progress == "pending":
        enrolled = event_type == "client.enrolled" or bool(
            await redis.hexists(keys.state, "state")
        )
        return FateAnswer(event_id, entry_id, "pending" if enrolled else "deferred")
    if progress == "unread":
        return FateAnswer(event_id, entry_id, "pending")
    if await redis.sismember(keys.processed, event_id):
        decision = await _decision(redis, keys.audit, event_id, entry_id)
        return FateAnswer(event_id, entry_id, "applied", decision=decision)
    # Acknowledged: the dead letter's marker is written before the ack, so none was.
    return FateAnswer(event_id, entry_id, "duplicate")


async def _progress(redis: RedisClient, stream: str, entry_id: str) -> str:
    """ "unread", "pending" or "done" in the gatekeeper's group."""
    try:
        groups = cast(list[dict[Any, Any]], await redis.xinfo_groups(stream))
    except RedisError:  # no stream or group yet: nobody has read it
        return "unread"
    info = next((g for g in groups if _text(g.get("name", b"")) == GATEKEEPER_GROUP), None)
    if info is None or _order(entry_id) > _order(_text(info.get("last-delivered-id", "0-0"))):
        return "unread"
    rows = await redis.xpending_range(
        stream, GATEKEEPER_GROUP, min=entry_id, max=entry_id, count=1
    )
    return "pending" if rows else "done"


async def _reason(redis: RedisClient, stream: str, entry_id: str) -> str:
    async for fields in _scan(redis, INBOUND_DEAD_LETTER, entry_id):
        if fields.get(b"source_id") == entry_id.encode() and (
            fields.get(b"source_stream", stream.encode()) == stream.encode()
        ):
            return bytes(fields.get(b"reason", b"")).decode(errors="replace")
    return "dead-lettered (the dead letter itself is no longer kept)"


async def _decision(
    redis: RedisClient, audit: str, event_id: str, entry_id: str
) -> dict[str, Any] | None:
    async for fields in _scan(redis, audit, entry_id):
        try:
            body = json.loads(decode_entry(fields[b"entry"]))
        except (KeyError, ValueError):
            continue
        if str(body.get("event", {}).get("event_id")) != event_id:
            continue
        decision = body.get("decision")
        if not decision:
            return None
        return {
            "decision_id": decision.get("decision_id"),
            "outcome": decision.get("outcome"),
            "from_stage": decision.get("from_stage"),
            "to_stage": decision.get("to_stage"),
        }
    return None


async def _scan(redis: RedisClient, stream: str, entry_id: str) -> Any:
    """The entries of `stream` from a little before `entry_id`'s time, oldest first."""
    start = f"{max(_order(entry_id)[0] - SKEW_MS, 0)}-0"
    seen = 0
    while seen < SCAN_LIMIT:
        rows = cast(list[Any], await redis.xrange(stream, min=start, count=SCAN_PAGE) or [])
        for row_id, fields in rows:
            yield fields
            start = f"({_text(row_id)}"
        seen += len(rows)
        if len(rows) < SCAN_PAGE:
            return


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
