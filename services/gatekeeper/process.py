"""Use case: apply one batch of inbound stream entries.

Every entry ends as exactly one of: applied, recognised duplicate, or
dead-lettered with a reason (too large, malformed JSON, schema violation, an
implausible time, an event id reused with other content, unknown client or
protocol, a domain refusal, or a tenancy or signature refusal, which is also
recorded as a security event: see tenancy.py). An event for a client not enrolled
yet may instead be "deferred": the caller leaves it pending for the claimer, and
on its last allowed delivery it is dead-lettered as an unknown client.

One entry's failure is its own: whatever reading, deciding or committing one
entry raises is turned into that entry's dead letter, and the rest of the batch
goes on. Only transient infrastructure failures (Redis down, loading, busy) raise,
so the whole batch stays pending and is redelivered; the steps are idempotent on
`event_id`, so entries applied before the failure are recognised as duplicates.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Literal

import structlog
from msgspec.structs import replace

from rehabgate.schemas.inbound import (
    ClientContactUpdated,
    ClientEnrolled,
    InboundEvent,
)
from rehabgate.schemas.streams import EVENT_FIELD

from .client_store import (
    ClientStore,
    Commit,
    DeadLetter,
    Snapshot,
    StepFailed,
    chain,
    pack_checkpoint,
)
from .domain import Decision, Protocol, Rejected, decide, enroll
from .domain.history import day_number, encode_state
from .intake import Limits, content_digest, event_ids, read_entry, refused
from .tenancy import (
    SHARED,
    Source,
    check_owner,
    foreign_client,
)

Fate = Literal["applied", "duplicate", "dead_lettered", "deferred"]
MAX_CONFLICT_ROUNDS = 8
SERVICE_VERSION = version("rehabgate")
_SERVICE_VERSION_JSON = json.dumps(SERVICE_VERSION)
log = structlog.get_logger("rehabgate.gatekeeper")


class NotEnrolledYet(Rejected):
    """An event for a client with no enrolment yet; it may still be on its way."""


class ConflictsPersist(Exception):
    """Other writers kept changing the same clients; retry the batch later."""


@dataclass(frozen=True)
class Entry:
    """A raw stream entry: its id and fields exactly as read."""

    entry_id: str
    fields: Mapping[bytes, bytes]
    #: Trace context fields for the decision's stream entry (common/tracing.py).
    trace: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """What became of each entry of a batch, keyed by stream entry id."""

    fates: dict[str, Fate]
    events: dict[str, InboundEvent]
    outcomes: dict[str, str]
    dead_letters: list[DeadLetter]

    @property
    def decisions(self) -> Counter[str]:
        return Counter(self.outcomes.values())


def parse_entry(
    entry: Entry,
    source: Source = SHARED,
    now: float | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen
) -> InboundEvent | DeadLetter:
    """intake.read_entry for one entry; anything it raises is the entry's own failure."""
    try:
        return read_entry(
            entry.entry_id, entry.fields, source, time.time() if now is None else now, limits
        )
    except Exception as exc:  # one entry's failure must not stall its batch
        return _failed(entry, "read", exc)


def _failed(entry: Entry, step: str, exc: Exception) -> DeadLetter:
    """A dead letter for an unexpected failure of one entry. The reason names the
    step and the error's kind, not its text (which could quote the payload)."""
    log.warning("entry_failed", entry_id=entry.entry_id, step=step, error=type(exc).__name__)
    return DeadLetter(
        entry.entry_id,
        f"the gatekeeper could not {step} this event ({type(exc).__name__}); it was not "
        f"applied: please report the entry id to the rehabgate operators",
        _raw(entry),
    )


def _foreign(entry: Entry, source: Source, event: InboundEvent) -> DeadLetter:
    """The commit step found the client owned by another clinic (a race the
    snapshot could not see)."""
    return refused(entry.entry_id, source, foreign_client(event_ids(event)), _raw(entry))


def _reused(entry: Entry, event_id: str) -> DeadLetter:
    return DeadLetter(
        entry.entry_id,
        f"event id reused with different content: {event_id} was already applied with "
        f"other content; give a new event a new event_id",
        _raw(entry),
    )


def _raw(entry: Entry) -> bytes:
    return entry.fields.get(EVENT_FIELD.encode(), b"")


async def process_batch(
    entries: Sequence[Entry],
    store: ClientStore,
    protocols: Mapping[str, Protocol],
    source: Source = SHARED,
    now: float | None = None,
    deferrable: Collection[str] = frozenset(),
    limits: Limits = Limits(),  # noqa: B008 - frozen
) -> Report:
    """`source`: the inbound stream the entries were read from (default: the shared
    development stream); `now`: unix time for signature checks and the time window
    (default: the clock); `deferrable`: entry ids that may wait for their client's
    enrolment (fate "deferred": the caller leaves them pending, to be retried by the
    claimer); `limits`: what intake accepts."""
    fates: dict[str, Fate] = {}
    outcomes: dict[str, str] = {}
    letters: list[DeadLetter] = []
    pending: list[tuple[Entry, InboundEvent]] = []
    for entry in entries:
        parsed = parse_entry(entry, source, now, limits)
        if isinstance(parsed, DeadLetter):
            letters.append(parsed)
        else:
            pending.append((entry, parsed))
    events = {entry.entry_id: event for entry, event in pending}

    for _ in range(MAX_CONFLICT_ROUNDS):
        if not pending:
            break
        pending = await _round(
            pending, store, protocols, source, fates, outcomes, letters, deferrable
        )
    else:
        raise ConflictsPersist(f"{len(pending)} events still conflicting")

    if letters:
        await store.dead_letter(letters, source.stream)
        for letter in letters:
            fates[letter.entry_id] = "dead_lettered"
    return Report(fates, events, outcomes, letters)


async def _round(
    pending: list[tuple[Entry, InboundEvent]],
    store: ClientStore,
    protocols: Mapping[str, Protocol],
    source: Source,
    fates: dict[str, Fate],
    outcomes: dict[str, str],
    letters: list[DeadLetter],
    deferrable: Collection[str],
) -> list[tuple[Entry, InboundEvent]]:
    """Decide every pending event against freshly read state; return those whose
    client was changed by another writer meanwhile (to be decided again)."""
    wanted: dict[str, list[str]] = defaultdict(list)
    for _, event in pending:
        wanted[event.client_id].append(str(event.event_id))
    snapshots = await store.load(wanted)

    commits: list[tuple[Entry, InboundEvent, Commit, str | None]] = []
    for entry, event in pending:
        snap = snapshots[event.client_id]
        ids = event_ids(event)
        event_id = ids["event_id"]
        if (denied := check_owner(snap.owner, event.clinic_id, ids)) is not None:
            letters.append(refused(entry.entry_id, source, denied, _raw(entry)))
            continue
        if snap.unreadable is not None:
            letters.append(DeadLetter(entry.entry_id, snap.unreadable, _raw(entry)))
            continue
        digest = content_digest(event)
        if event_id in snap.processed:
            if snap.digests.get(event_id, digest) != digest:
                letters.append(_reused(entry, event_id))
            else:
                fates[entry.entry_id] = "duplicate"
            continue
        if isinstance(event, ClientContactUpdated):
            contact = event.model_dump_json(
                include={"channel", "address", "locale", "quiet_hours"}
            )
            result = await store.store_contact(
                event.client_id, event.clinic_id, event_id, contact, digest
            )
            if result == "foreign":  # another clinic took the client meanwhile
                letters.append(_foreign(entry, source, event))
                continue
            if result == "reused":
                letters.append(_reused(entry, event_id))
                continue
            fates[entry.entry_id] = "duplicate" if result == "duplicate" else "applied"
            snap.processed.add(event_id)
            snap.digests[event_id] = digest
            snap.owner = snap.owner or event.clinic_id
            continue
        late = False
        if snap.state is not None and not isinstance(event, ClientEnrolled):
            late = snap.state.is_late(event)
            if late and not snap.state.can_replay(event):
                # Rare: an event older than the newest applied one. Deciding it needs
                # the history since a checkpoint before it and the decisions on
                # record: what is committed, plus this batch's events so far (read
                # once per batch, unless a later entry is older than that checkpoint).
                # (Outside the try: a Redis failure here leaves the batch pending.)
                await _load_history(store, snap, event)
        try:
            decision = _decide(snap, event, protocols)
            commit = _commit_for(snap, event, event_id, digest, decision, entry.trace, late)
        except NotEnrolledYet as refusal:
            # With several gatekeepers, a client's first session can be read before
            # its enrolment is applied: wait for it (bounded by max deliveries).
            if entry.entry_id in deferrable:
                fates[entry.entry_id] = "deferred"
            else:
                letters.append(DeadLetter(entry.entry_id, refusal.reason, _raw(entry)))
            continue
        except Rejected as refusal:
            letters.append(DeadLetter(entry.entry_id, refusal.reason, _raw(entry)))
            continue
        except Exception as exc:  # one entry's failure is its own
            letters.append(_failed(entry, "evaluate", exc))
            continue
        outcome = decision.evaluation.outcome if decision.evaluation else None
        commits.append((entry, event, commit, outcome))
        # Later events of this client in the same batch build on this one.
        snap.state = decision.state
        snap.stored = commit.state
        snap.version += 1
        snap.audit_head = commit.audit_hash
        snap.processed.add(event_id)
        snap.digests[event_id] = digest
        snap.owner = snap.owner or event.clinic_id
        for evaluation in decision.evaluations:
            snap.recorded[str(evaluation.cause_event_id)] = evaluation

    results = await store.commit([c for _, _, c, _ in commits])
    retry: list[tuple[Entry, InboundEvent]] = []
    conflicted: set[str] = set()
    for (entry, event, _, decided), step_result in zip(commits, results, strict=True):
        if isinstance(step_result, StepFailed):  # the step failed on its own (not Redis)
            letters.append(_failed(entry, "store", step_result))
            conflicted.add(event.client_id)  # later steps built on this one: decide again
        elif step_result == "foreign":  # another clinic took the client meanwhile
            letters.append(_foreign(entry, source, event))
            conflicted.add(event.client_id)  # later steps built on this one: decide again
        elif step_result == "reused":  # another gatekeeper applied the id meanwhile
            letters.append(_reused(entry, str(event.event_id)))
            conflicted.add(event.client_id)
        elif step_result == "conflict" or event.client_id in conflicted:
            # Once one step of a client conflicts, its later steps in this batch were
            # built on a state that does not exist: decide them all again.
            conflicted.add(event.client_id)
            retry.append((entry, event))
        elif step_result == "duplicate":
            fates[entry.entry_id] = "duplicate"
        else:
            fates[entry.entry_id] = "applied"
            if decided:
                outcomes[entry.entry_id] = decided
    return retry


async def _load_history(store: ClientStore, snap: Snapshot, event: InboundEvent) -> None:
    """Give `snap.state` the log a late `event` replays: the committed events since
    the newest checkpoint before it, plus those this batch applied so far."""
    assert snap.state is not None
    history = await store.load_history(event.client_id, event.occurred_at)
    committed = {e.event_id for e in history.events}
    batch = tuple(e for e in snap.state.log if e.event_id not in committed)
    snap.state = replace(snap.state, log=(*history.events, *batch), base=history.base)
    snap.recorded = {**history.decisions, **snap.recorded}


def _decide(snap: Snapshot, event: InboundEvent, protocols: Mapping[str, Protocol]) -> Decision:
    if isinstance(event, ClientEnrolled):
        protocol = protocols.get(event.protocol)
        if protocol is None:
            raise Rejected(f"unknown protocol {event.protocol}")
        return enroll(protocol, snap.state, event)
    if isinstance(event, ClientContactUpdated):  # pragma: no cover - handled by the caller
        raise AssertionError("contact updates carry no health data and are not decided")
    if snap.state is None:
        raise NotEnrolledYet("unknown client: no client.enrolled event for this client id")
    protocol = protocols.get(snap.state.protocol)
    if protocol is None:
        raise Rejected(f"client's protocol {snap.state.protocol} is not loaded")
    return decide(protocol, snap.state, event, snap.recorded)


def _commit_for(
    snap: Snapshot,
    event: InboundEvent,
    event_id: str,
    digest: str,
    decision: Decision,
    trace: Mapping[str, str],
    late: bool,
) -> Commit:
    evaluation = decision.evaluation
    decision_json = evaluation.model_dump_json() if evaluation else None
    corrections = [c.model_dump_json() for c in decision.corrections]
    parts = {
        "seq": str(snap.version + 1),
        "event": event.model_dump_json(),
        "decision": decision_json or "null",
        "stage_after": json.dumps(decision.state.stage_id),
        "status_after": json.dumps(decision.state.status),
        "service_version": _SERVICE_VERSION_JSON,
    }
    if corrections:  # (absent otherwise: entries without any read as before)
        parts["corrections"] = "[" + ",".join(corrections) + "]"
    entry_json, entry_hash = chain(snap.audit_head, parts)
    stored = encode_state(decision.state)
    return Commit(
        keys=snap.keys,
        event_id=event_id,
        expected_version=snap.version,
        previous_hash=snap.audit_head,
        state=stored,
        audit_entry=entry_json,
        audit_hash=entry_hash,
        decisions=(decision_json, *corrections) if decision_json else tuple(corrections),
        digest=digest,
        clinic_id=event.clinic_id,
        decision_fields=tuple(item for pair in trace.items() for item in pair),
        checkpoint=_checkpoint(snap, event, late),
        stale_after=day_number(event.occurred_at) if late else None,
    )


def _checkpoint(snap: Snapshot, event: InboundEvent, late: bool) -> tuple[int, bytes] | None:
    """(day, the state before `event`) when `event` opens a day; else None."""
    if snap.state is None or snap.stored is None or late or isinstance(event, _UNLOGGED):
        return None
    day = snap.state.opens_day(event)
    return None if day is None else (day, pack_checkpoint(snap.stored))


#: Events that are not in a client's log (so open no day).
_UNLOGGED = (ClientEnrolled, ClientContactUpdated)
