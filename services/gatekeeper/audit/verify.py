"""Tamper evidence: recompute one client's audit chain and name its first broken link.

Each entry's JSON holds `prev_hash`, and its `hash` is sha256(prev_hash + JSON), so
an edited entry no longer hashes to its `hash`; an entry rewritten with a fresh hash
no longer matches the `prev_hash` its successor links to; a deleted or moved entry
breaks the `seq` run and the links; and because the chain head and the entry count
(`version`: every applied event writes exactly one entry) are kept apart from the
entries, in the client state, losing entries at the end is caught too.

What cannot be caught: someone with write access who rewrites every entry from
some point on *and* the head and version in the state. The chain proves the
trail is intact relative to its head; anchoring heads elsewhere would close that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .chain import GENESIS, entry_hash

BreakKind = Literal["modified", "deleted", "reordered", "truncated", "inserted", "head_missing"]


@dataclass(frozen=True)
class StoredEntry:
    """One audit stream entry exactly as stored: its id, the `entry` JSON and `hash`."""

    entry_id: str
    entry: str
    hash: str


@dataclass(frozen=True)
class Head:
    """What the client state keeps apart from the entries. `audit_head` is None when
    the state hash is missing altogether."""

    audit_head: str | None
    version: int


@dataclass(frozen=True)
class Break:
    """The first broken link: where (stream position, entry id, seq) and why."""

    kind: BreakKind
    position: int
    entry_id: str | None
    seq: int | None
    detail: str


@dataclass(frozen=True)
class Verdict:
    entries: int
    version: int
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


@dataclass(frozen=True)
class _Parsed:
    seq: int | None
    prev_hash: str | None


def _parse(raw: str) -> _Parsed | None:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    seq, prev = body.get("seq"), body.get("prev_hash")
    return _Parsed(
        seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        prev if isinstance(prev, str) else None,
    )


def verify_chain(entries: Sequence[StoredEntry], head: Head) -> Verdict:
    """Walk the entries in stream order; the first link that does not hold is reported."""
    broken = _first_break(entries, head)
    return Verdict(len(entries), head.version, broken)


def _first_break(entries: Sequence[StoredEntry], head: Head) -> Break | None:
    if head.audit_head is None and entries:
        return Break(
            "head_missing", 0, entries[0].entry_id, None,
            "the client state (chain head and version) is missing; the entries cannot be "
            "checked for truncation",
        )  # fmt: skip
    parsed = [_parse(e.entry) for e in entries]
    seqs = [p.seq if p else None for p in parsed]
    expected_prev, expected_seq = GENESIS, 1
    for position, (stored, body) in enumerate(zip(entries, parsed, strict=True)):
        where = (position, stored.entry_id, body.seq if body else None)
        if body is None or body.seq is None or body.prev_hash is None:
            return Break("modified", *where, "entry is not a valid audit entry (JSON altered)")
        if entry_hash(body.prev_hash, stored.entry) != stored.hash:
            return Break(
                "modified", *where,
                f"entry seq {body.seq} does not hash to its stored hash: its content or hash "
                "was changed",
            )  # fmt: skip
        linked = body.prev_hash == expected_prev
        if linked and body.seq != expected_seq:
            return Break(
                "modified", *where,
                f"entry at seq {expected_seq}'s place links correctly but says seq {body.seq}: "
                "it was rewritten with a recomputed hash",
            )  # fmt: skip
        if body.seq != expected_seq:
            return _out_of_sequence(position, stored, body.seq, expected_seq, seqs)
        if not linked:
            if position == 0:
                return Break(
                    "modified", *where,
                    "the first entry does not start from the genesis hash: it was rewritten",
                )  # fmt: skip
            before = entries[position - 1]
            return Break(
                "modified", position - 1, before.entry_id, expected_seq - 1,
                f"entry seq {expected_seq} links to another hash than entry seq "
                f"{expected_seq - 1} has: one of the two was rewritten with a recomputed hash "
                f"(most likely seq {expected_seq - 1}, whose content no longer is what its "
                "successor was chained to)",
            )  # fmt: skip
        expected_prev, expected_seq = stored.hash, expected_seq + 1
    return _against_head(entries, head, expected_prev)


def _out_of_sequence(
    position: int, stored: StoredEntry, seq: int, expected: int, seqs: Sequence[int | None]
) -> Break:
    where = (position, stored.entry_id, seq)
    if seq < expected:  # every seq below `expected` was already seen, in order
        return Break("inserted", *where, f"entry seq {seq} appears again after seq {expected - 1}")
    if expected in seqs[position + 1 :]:
        return Break(
            "reordered", *where,
            f"entry seq {seq} stands where seq {expected} belongs; seq {expected} comes later",
        )  # fmt: skip
    missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
    return Break("deleted", *where, f"{missing} missing before entry seq {seq}")


def _against_head(entries: Sequence[StoredEntry], head: Head, last_hash: str) -> Break | None:
    """The walk held; now the entries must end where the state says the chain ends."""
    count = len(entries)
    if count == 0 and head.version == 0:
        return None  # no such client, or one whose every event was refused
    if count > head.version:
        extra = entries[head.version]
        return Break(
            "inserted", head.version, extra.entry_id, head.version + 1,
            f"{count - head.version} entries after the chain head (the state records "
            f"{head.version} events)",
        )  # fmt: skip
    if count < head.version:
        missing = head.version - count
        return Break(
            "truncated", count, None, count + 1,
            f"the last {missing} entries (seq {count + 1}..{head.version}) are gone: the "
            f"state records {head.version} events, the chain holds {count}",
        )  # fmt: skip
    if last_hash != head.audit_head:
        last = entries[-1] if entries else None
        return Break(
            "modified", max(count - 1, 0), last.entry_id if last else None, count or None,
            "the last entry's hash is not the chain head kept in the client state: the entry "
            "was rewritten with a recomputed hash, or the head was changed",
        )  # fmt: skip
    return None
