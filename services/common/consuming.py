"""Helpers shared by both services' stream consumers: consumer groups, the
delivery cap of the claimers, and pruning of consumers nobody runs any more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from faststream.redis.annotations import RedisBatchStreamMessage
from redis.exceptions import ResponseError

from rehabgate.schemas.streams import EVENT_FIELD

from .connections import RedisClient
from .metrics import ServiceMetrics

#: A stream entry as read: its id as text and its fields.
RawEntry = tuple[str, Mapping[bytes, bytes]]

#: Consumers idle this long with nothing pending belong to processes long gone.
PRUNE_IDLE_MS = 3_600_000

# Check and delete in one script: XGROUP DELCONSUMER drops the consumer's pending
# entries from the PEL, so a consumer that took an entry meanwhile must be kept.
_PRUNE = """
local deleted = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(deleted, f['name'])
  end
end
return deleted
"""


async def ensure_group(redis: RedisClient, stream: str, group: str) -> None:
    """Create the consumer group at id 0 (so entries written before the first
    start are not skipped), creating the stream if needed; idempotent. After a
    group was lost (FLUSHALL, XGROUP DESTROY) this re-reads every entry still in
    the stream; the processed markers and the delivery ledger turn them into
    recognised duplicates."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def raw_batch_parser(
    msg: Mapping[str, Any], original_parser: Callable[[Mapping[str, Any]], Awaitable[Any]]
) -> Any:
    """Broker-level FastStream parser for our batch handlers, which read raw entries.

    FastStream decodes every entry's fields as a message body before a handler
    runs; one entry with invalid UTF-8 makes that raise, the handler never sees
    the batch, and the batch (and each reclaim of it) stays pending forever. So
    the default parser sees the batch with empty field maps, and the message
    keeps the raw entries for the handler to decode, and dead-letter, itself.
    """
    data = msg.get("data")
    if msg.get("type") != "bstream" or not isinstance(data, list):
        return await original_parser(msg)
    message = await original_parser({**msg, "data": [{} for _ in data]})
    message.raw_message = msg
    return message


def raw_entries(msg: RedisBatchStreamMessage) -> list[RawEntry]:
    """The entries of a batch message with their stream ids."""
    raw = msg.raw_message
    return [
        (entry_id.decode(), fields)
        for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)
    ]


async def delivery_counts(
    redis: RedisClient, stream: str, group: str, entry_ids: Sequence[str]
) -> dict[str, int]:
    """How often each pending entry has been delivered (XPENDING), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for entry_id in entry_ids:
        pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    replies = await pipe.execute()
    return {
        entry_id: int(rows[0]["times_delivered"]) if rows else 1
        for entry_id, rows in zip(entry_ids, replies, strict=True)
    }


async def dead_letter_exhausted(
    redis: RedisClient,
    entries: Sequence[RawEntry],
    *,
    stream: str,
    group: str,
    dead_letter_stream: str,
    max_deliveries: int,
    log: structlog.typing.FilteringBoundLogger,
    metrics: ServiceMetrics,
) -> list[RawEntry]:
    """The claimers' delivery cap, so nothing is retried forever: entries delivered
    more than `max_deliveries` times are moved to `dead_letter_stream` (reason and
    raw payload) and acknowledged; the others are returned to be handled again.

    The dead letter is written before the XACK (a round trip of its own: on a
    cluster the two streams may live on different nodes, and one pipeline would
    reach them in no fixed order), so a crash in between leaves at worst a second
    dead letter for the same entry, never a lost one. `metrics`
    counts them (rehabgate_dead_letters_total)."""
    counts = await delivery_counts(redis, stream, group, [entry_id for entry_id, _ in entries])
    exhausted = [(i, f) for i, f in entries if counts[i] > max_deliveries]
    if exhausted:
        reason = f"gave up after {max_deliveries} deliveries"
        at = datetime.now(UTC).isoformat()
        pipe = redis.pipeline(transaction=False)
        for entry_id, fields in exhausted:
            pipe.xadd(
                dead_letter_stream,
                {"reason": reason, "raw": fields.get(EVENT_FIELD.encode(), b""),
                 "source_stream": stream, "source_id": entry_id, "dead_lettered_at": at},
            )  # fmt: skip
        await pipe.execute()
        await redis.xack(stream, group, *(entry_id for entry_id, _ in exhausted))
        metrics.dead_lettered(reason for _ in exhausted)
        for entry_id, _ in exhausted:
            log.warning(
                "entry_dead_lettered", stream=stream, entry_id=entry_id,
                deliveries=counts[entry_id], reason=reason,
            )  # fmt: skip
    return [(i, f) for i, f in entries if counts[i] <= max_deliveries]


async def prune_idle_consumers(
    redis: RedisClient, stream: str, group: str, min_idle_ms: int = PRUNE_IDLE_MS
) -> list[str]:
    """Delete the group's consumers that own no pending entry and have been idle
    longer than `min_idle_ms` (every restart adds a hostname-pid consumer; XINFO
    and health views fill up with dead ones). One with pending entries is always
    kept: deleting it would drop its entries from the PEL, where the claimer
    finds them. Returns the deleted names."""
    deleted = await redis.eval(_PRUNE, 1, stream, group, min_idle_ms)
    return [name.decode() for name in cast(list[bytes], deleted)]
