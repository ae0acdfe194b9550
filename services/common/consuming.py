"""Helpers shared by both services' stream consumers."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group at id 0 (so entries written before the first
    start are not skipped), creating the stream if needed; idempotent."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def delivery_counts(
    redis: Redis, stream: str, group: str, entry_ids: list[bytes]
) -> dict[bytes, int]:
    """How often each pending entry has been delivered (XPENDING), for retry caps."""
    counts: dict[bytes, int] = {}
    for entry_id in entry_ids:
        rows = await redis.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
        counts[entry_id] = int(rows[0]["times_delivered"]) if rows else 1
    return counts
