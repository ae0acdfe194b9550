"""An in-memory ClientStore (services/gatekeeper/client_store.py) for fast tests of
the use case: the same checks as the Redis adapter's Lua steps (owner, processed
marker and content digest, version and chain head), all in one process.

The Redis adapter itself is tested on a real server (tests/integration)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import INBOUND
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.client_store import (
    GENESIS,
    Commit,
    CommitResult,
    DeadLetter,
    RecordedHistory,
    Snapshot,
    StepFailed,
    checkpoints_kept,
    history_of,
    unpack_checkpoint,
)
from rehabgate.services.gatekeeper.domain.history import (
    ClientState,
    day_number,
    decode_state,
    encode_state,
)


@dataclass
class StoredClient:
    state: ClientState | None = None
    version: int = 0
    head: str = GENESIS
    owner: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    contact: str | None = None
    #: Day number -> (index of the first entry after it, state JSON before it).
    checkpoints: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    #: How many histories were read, and how many entries they read in all.
    history_reads: int = 0
    entries_read: int = 0


@dataclass
class InMemoryClientStore:
    partitions: int = 1
    clients: dict[str, StoredClient] = field(default_factory=dict)
    #: Every decision written to the evaluated stream, in write order.
    evaluated: list[ProgressionEvaluated] = field(default_factory=list)
    #: Dead letters by source entry id (written once each, as the adapter does).
    dead_letters: dict[str, DeadLetter] = field(default_factory=dict)

    def keys(self, client_id: str) -> ClientKeys:
        return ClientKeys.of(client_id, self.partitions)

    def _client(self, client_id: str) -> StoredClient:
        return self.clients.setdefault(client_id, StoredClient())

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        out = {}
        for client_id, event_ids in wanted.items():
            c = self._client(client_id)
            out[client_id] = Snapshot(
                keys=self.keys(client_id),
                state=c.state,
                stored=encode_state(c.state) if c.state is not None else None,
                version=c.version,
                audit_head=c.head,
                processed={e for e in event_ids if e in c.digests},
                digests={e: c.digests[e] for e in event_ids if e in c.digests},
                owner=c.owner,
            )
        return out

    async def commit(self, commits: Sequence[Commit]) -> list[CommitResult | StepFailed]:
        return [self._step(commit) for commit in commits]

    def _step(self, commit: Commit) -> CommitResult | StepFailed:
        c = self._client(commit.keys.client_id)
        if c.owner is not None and c.owner != commit.clinic_id:
            return "foreign"
        if commit.event_id in c.digests:
            return "reused" if c.digests[commit.event_id] != commit.digest else "duplicate"
        if c.version != commit.expected_version or c.head != commit.previous_hash:
            return "conflict"
        # stored as the adapter stores it: JSON, without the in-memory event log
        state = decode_state(commit.state)
        c.state, c.version, c.head = state, c.version + 1, commit.audit_hash
        c.digests[commit.event_id] = commit.digest
        c.owner = c.owner or commit.clinic_id
        c.entries.append(json.loads(commit.audit_entry))
        if commit.stale_after is not None:
            c.checkpoints = {d: v for d, v in c.checkpoints.items() if d <= commit.stale_after}
        if commit.checkpoint is not None:
            day, packed = commit.checkpoint
            c.checkpoints[day] = (len(c.entries) - 1, packed)
            kept = checkpoints_kept(c.checkpoints, day)
            c.checkpoints = {d: v for d, v in c.checkpoints.items() if d in kept}
        self.evaluated += [ProgressionEvaluated.model_validate_json(d) for d in commit.decisions]
        return "applied"

    async def load_history(
        self, client_id: str, before: datetime | None = None
    ) -> RecordedHistory:
        c = self._client(client_id)
        usable = [d for d in c.checkpoints if before is not None and d <= day_number(before)]
        position, base = 0, None
        if usable:
            position, state = c.checkpoints[max(usable)]
            base = unpack_checkpoint(state)
        c.history_reads += 1
        c.entries_read += len(c.entries) - position
        history = history_of(c.entries[position:])
        return RecordedHistory(history.events, history.decisions, base)

    async def store_contact(
        self, client_id: str, clinic_id: str, event_id: str, contact_json: str, digest: str
    ) -> str:
        c = self._client(client_id)
        if c.owner is not None and c.owner != clinic_id:
            return "foreign"
        if event_id in c.digests:
            return "reused" if c.digests[event_id] != digest else "duplicate"
        c.contact, c.digests[event_id] = contact_json, digest
        c.owner = c.owner or clinic_id
        return "applied"

    async def dead_letter(self, letters: Iterable[DeadLetter], stream: str = INBOUND) -> None:
        for letter in letters:
            self.dead_letters.setdefault(letter.entry_id, letter)
