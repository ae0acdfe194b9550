"""Writing dead letters: once per entry, and bounded in size.

Both services dead-letter entries (the gatekeeper refused events, the claimers
entries past their delivery cap). A dead letter is written before its entry is
acknowledged, so a crash in between redelivers the entry; a marker per source
entry, set in the same atomic step as the letter, makes the second attempt write
nothing. The letter keeps a bounded prefix of the raw payload with its size and
SHA-256 (a 28 MB entry must not become a 28 MB dead letter), which is all a sender
needs to find the event it sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from redis.typing import EncodableT

from .connections import RedisClient

#: Raw payloads up to this size are kept whole (so `rehabgate dlq replay` can put
#: them back); longer ones are cut to it. The intake cap is the same by default.
RAW_KEPT_BYTES = 65_536
#: How long the "already dead-lettered" marker of an entry lives: far longer than
#: any redelivery of it (the claimers give up after max_deliveries tries).
MARKER_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Letter:
    """One entry to dead-letter: where it came from, why, and its raw payload."""

    source_stream: str
    source_id: str
    reason: str
    raw: bytes


def letter_fields(
    letter: Letter, at: datetime, kept: int = RAW_KEPT_BYTES
) -> dict[str, EncodableT]:
    """The dead letter's stream fields."""
    return {
        "reason": letter.reason,
        "raw": letter.raw[:kept],
        "raw_bytes": len(letter.raw),
        "raw_sha256": hashlib.sha256(letter.raw).hexdigest(),
        "raw_truncated": int(len(letter.raw) > kept),
        "source_stream": letter.source_stream,
        "source_id": letter.source_id,
        "dead_lettered_at": at.isoformat(),
    }


class DeadLetters:
    """The dead-letter stream `stream`, written once per source entry."""

    def __init__(self, redis: RedisClient, stream: str, kept: int = RAW_KEPT_BYTES) -> None:
        self.redis = redis
        self.stream = stream
        self.kept = kept
        self._step = redis.register_script(
            (Path(__file__).parent / "dead_letter_step.lua").read_text()
        )

    def marker(self, letter: Letter) -> str:
        """The marker key, in the stream's slot (an atomic step's keys share one): the
        stream's own hash tag when it has one, else its whole name as the tag."""
        # Redis hashes the text between the first "{" and the next "}", if not empty.
        opening = self.stream.find("{")
        tagged = opening >= 0 and self.stream.find("}", opening + 1) > opening + 1
        tag = self.stream if tagged else f"{{{self.stream}}}"
        return f"{tag}:lettered:{letter.source_stream}:{letter.source_id}"

    async def write(self, letter: Letter, at: datetime | None = None) -> bool:
        """Dead-letter `letter` unless its entry was dead-lettered before; True when
        this call wrote it."""
        fields = letter_fields(letter, at or datetime.now(UTC), self.kept)
        args: list[EncodableT] = [MARKER_TTL_S]
        for name, value in fields.items():
            args += [name, value]
        written = await self._step(keys=[self.stream, self.marker(letter)], args=args)
        return bool(written)

    async def write_all(self, letters: Mapping[str, Letter]) -> set[str]:
        """Each letter once; the source ids of those written by this call."""
        return {i for i, letter in letters.items() if await self.write(letter)}
