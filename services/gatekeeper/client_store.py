"""The gatekeeper's client store, as the use case (process.py) sees it: a port.

`RedisClientStore` (store.py) is the adapter every service runs; tests also use
an in-memory fake behind the same Protocol, so ordering, conflict rounds,
deferral and duplicates can be tested fast. The audit chain's format lives
in audit/chain.py, shared by the writer and the verifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rehabgate.schemas.inbound import INBOUND_ADAPTER, ClientContactUpdated, ClientEnrolled
from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import INBOUND
from rehabgate.services.common.keys import ClientKeys

from .audit.chain import GENESIS, chain
from .domain.history import ClientState, ProgressEvent

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
    "history_of",
]

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
    #: The decisions on record by cause event id, where known (loaded with the
    #: full log for a late event, and kept for this batch's own decisions).
    recorded: dict[str, ProgressionEvaluated] = field(default_factory=dict)
    #: Whether `state.log` and `recorded` hold the client's whole history yet.
    history_loaded: bool = False


@dataclass(frozen=True)
class Commit:
    """One event's writes, applied all together or not at all."""

    keys: ClientKeys
    event_id: str
    expected_version: int
    #: The chain head the entry links to: the step is refused if it moved meanwhile.
    previous_hash: str
    state: ClientState
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
    decision it supersedes)."""

    events: tuple[ProgressEvent, ...]
    decisions: Mapping[str, ProgressionEvaluated]


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

    async def load_history(self, client_id: str) -> RecordedHistory:
        """Every event applied to the client and the decisions on record."""
        ...

    async def store_contact(
        self, client_id: str, clinic_id: str, event_id: str, contact_json: str, digest: str
    ) -> str:
        """'applied', 'duplicate', 'reused' or 'foreign'."""
        ...

    async def dead_letter(self, letters: Iterable[DeadLetter], stream: str = INBOUND) -> None:
        """Each refused entry's dead letter, once."""
        ...
