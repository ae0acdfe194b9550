"""The gatekeeper's client store, as the use case (process.py) sees it: a port.

`RedisClientStore` (store.py) is the adapter every service runs; tests also use
an in-memory fake behind the same Protocol, so ordering, conflict rounds,
deferral and duplicates can be tested fast. The audit chain's format lives
in audit/chain.py, shared by the writer and the verifier.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from rehabgate.schemas.inbound import INBOUND_ADAPTER, ClientContactUpdated, ClientEnrolled
from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import INBOUND
from rehabgate.services.common.keys import ClientKeys

from .audit.chain import GENESIS, chain
from .domain.history import ClientState, ProgressEvent, decode_state

__all__ = [
    "GENESIS",
    "ClientStore",
    "Commit",
    "CommitResult",
    "DeadLetter",
    "RecordedHistory",
    "Snapshot",
    "StepFailed",
    "chain",
    "checkpoints_kept",
    "history_of",
    "pack_checkpoint",
    "unpack_checkpoint",
]

#: Checkpoints kept (see `checkpoints_kept`): one per day for this many days before
#: the newest, then the first of each week, back this many days.
DAILY_CHECKPOINT_DAYS = 7
WEEKLY_CHECKPOINT_DAYS = 42

#: 'foreign': the client belongs to another clinic (checked atomically, in the step);
#: 'reused': the event id was applied before with other content.
CommitResult = Literal["applied", "duplicate", "conflict", "foreign", "reused"]


@dataclass
class Snapshot:
    """A client as read at the start of a batch."""

    keys: ClientKeys
    state: ClientState | None
    version: int
    audit_head: str
    processed: set[str] = field(default_factory=set)
    #: Content digests of the applied ones among the batch's event ids (where kept).
    digests: dict[str, str] = field(default_factory=dict)
    #: The clinic the client belongs to (its first writer); None for a new client.
    owner: str | None = None
    #: Why the stored state cannot be read (its events are dead-lettered), or None.
    unreadable: str | None = None
    #: The state's stored form (domain.history.encode_state) as read, then as this
    #: batch last committed it: a new day's checkpoint is a copy of it.
    stored: bytes | None = None
    #: The decisions on record by cause event id, where known (loaded with the
    #: full log for a late event, and kept for this batch's own decisions).
    recorded: dict[str, ProgressionEvaluated] = field(default_factory=dict)


@dataclass(frozen=True)
class Commit:
    """One event's writes, applied all together or not at all."""

    keys: ClientKeys
    event_id: str
    expected_version: int
    #: The chain head the entry links to: the step is refused if it moved meanwhile.
    previous_hash: str
    #: The client's state after the event, in its stored form (encode_state).
    state: bytes
    #: The entry's JSON (stored compressed: audit/codec.py).
    audit_entry: str
    audit_hash: str
    #: The decisions' JSON for the evaluated stream (the audit entry holds them too):
    #: none, one, or a late event's own decision followed by its corrections.
    decisions: tuple[str, ...]
    #: The event's clinic: the step refuses it when the client belongs to another.
    clinic_id: str
    #: The event's content digest (intake.content_digest), kept beside its marker.
    digest: str
    #: Extra field/value pairs of the decision's stream entry (its trace context).
    decision_fields: tuple[str, ...] = ()
    #: The day number this event opens (ClientState.opens_day) and the state before
    #: it, compressed (`pack_checkpoint`): kept as that day's checkpoint, with the
    #: position of this event's audit entry (every event of that day or later is at
    #: or after it).
    checkpoint: tuple[int, bytes] | None = None
    #: A late event's day number: checkpoints of later days no longer hold (they
    #: lack this event) and are dropped.
    stale_after: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An entry refused with a reason the sender can act on."""

    entry_id: str
    reason: str
    raw: bytes
    #: Also a security event: these fields (ids and reason only) go to SECURITY_EVENTS.
    security: Mapping[str, str] | None = None


@dataclass(frozen=True)
class RecordedHistory:
    """What a client's audit trail says happened: every applied progress event, once,
    in audit order, and the decision on record for each (a correction replaces the
    decision it supersedes). With a checkpoint (`base`), only what was applied after
    it: `base` holds the rest."""

    events: tuple[ProgressEvent, ...]
    decisions: Mapping[str, ProgressionEvaluated]
    base: ClientState | None = None


def pack_checkpoint(stored_state: bytes) -> bytes:
    """A checkpoint's stored form: the state's, deflated (a client keeps about 14,
    and a state's JSON shrinks about 4.5 times; zlib's fastest level)."""
    return zlib.compress(stored_state, 1)


def unpack_checkpoint(packed: bytes) -> ClientState:
    """A checkpoint's state (also one kept as plain JSON, before they were deflated)."""
    return decode_state(packed if packed[:1] == b"{" else zlib.decompress(packed))


def checkpoints_kept(days: Iterable[int], newest: int) -> set[int]:
    """Which checkpoint days to keep once `newest` has one: every day of the last
    DAILY_CHECKPOINT_DAYS, then the earliest of each week (day number // 7) back to
    WEEKLY_CHECKPOINT_DAYS. So a client keeps about 14, whatever their history's
    length, and a late event replays at most a week more than its own span. The
    commit step (commit_step.lua) applies the same rule."""
    days = set(days)
    first_of_week: dict[int, int] = {}
    for day in days:
        week = day // 7
        first_of_week[week] = min(day, first_of_week.get(week, day))
    return {
        day
        for day in days
        if day >= newest - DAILY_CHECKPOINT_DAYS
        or (day >= newest - WEEKLY_CHECKPOINT_DAYS and first_of_week[day // 7] == day)
    }


class StepFailed(Exception):
    """One event's step failed for a reason of its own (not the store's state): that
    event alone is dead-lettered."""


def history_of(bodies: Iterable[Mapping[str, Any]]) -> RecordedHistory:
    """Every progress event in a client's audit entries (parsed JSON), once, in audit
    order, and the decision on record for each (a correction replaces the decision
    it supersedes)."""
    events: dict[str, ProgressEvent] = {}
    decisions: dict[str, ProgressionEvaluated] = {}
    for body in bodies:
        event = INBOUND_ADAPTER.validate_python(body["event"])
        if not isinstance(event, ClientEnrolled | ClientContactUpdated):
            events.setdefault(str(event.event_id), event)
        for raw in (body.get("decision"), *body.get("corrections", ())):
            if raw:
                decision = ProgressionEvaluated.model_validate(raw)
                decisions[str(decision.cause_event_id)] = decision
    return RecordedHistory(tuple(events.values()), decisions)


class ClientStore(Protocol):
    """What applying a batch needs of the store of clients."""

    def keys(self, client_id: str) -> ClientKeys: ...

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        """Each wanted client (client id -> the batch's event ids for it)."""
        ...

    async def commit(self, commits: Sequence[Commit]) -> list[CommitResult | StepFailed]:
        """Each commit atomically, in order; one result each."""
        ...

    async def load_history(
        self, client_id: str, before: datetime | None = None
    ) -> RecordedHistory:
        """The events applied to the client and the decisions on record: from the
        newest checkpoint of a day no later than `before`'s (a late event's time), or
        all of them (no such checkpoint, or `before` is None)."""
        ...

    async def store_contact(
        self, client_id: str, clinic_id: str, event_id: str, contact_json: str, digest: str
    ) -> str:
        """'applied', 'duplicate', 'reused' or 'foreign'."""
        ...

    async def dead_letter(self, letters: Iterable[DeadLetter], stream: str = INBOUND) -> None:
        """Each refused entry's dead letter, once."""
        ...
