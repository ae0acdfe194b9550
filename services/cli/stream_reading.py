"""Reading streams from the command line: where a stream ends, and what came after."""

from __future__ import annotations

from typing import Any, cast

import redis

Fields = dict[bytes, bytes]


def last_id(client: redis.Redis, stream: str) -> str:
    """Id of the newest entry, or "0-0" for an empty or missing stream."""
    newest = cast(list[Any], client.xrevrange(stream, count=1))
    return cast(bytes, newest[0][0]).decode() if newest else "0-0"


def read_after(client: redis.Redis, stream: str, cursor: str) -> list[tuple[str, Fields]]:
    """Entries strictly after `cursor`, oldest first, with their ids as text."""
    entries = cast(list[tuple[bytes, Fields]], client.xrange(stream, min=f"({cursor}"))
    return [(entry_id.decode(), fields) for entry_id, fields in entries]
