"""A client's audit trail read as a typed timeline, for physios.

Pure: stored entries in, timeline out. Every item is one audit entry (one applied
event): what caused it, what was decided and by whom, the stage before and after,
and each criterion's observed value, threshold and verdict as recorded at the
time. Nothing edits an entry; a correction is a later entry, so a re-sent session
is shown as superseding the earlier one and only the latest counts in the chart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from rehabgate.schemas.inbound import (
    INBOUND_ADAPTER,
    CheckinLogged,
    ClientDischarged,
    ClinicianAction,
    SessionLogged,
)
from rehabgate.schemas.outbound import (
    CriterionResult,
    CriterionStatus,
    Observed,
    Outcome,
    ProgressionEvaluated,
)
from rehabgate.services.gatekeeper.domain.history import SessionRecord

from .verify import StoredEntry

#: A check-in counts as the session's next morning when it comes this soon after it
#: (the `next_morning_response` criterion's default window).
NEXT_MORNING_HOURS = 36


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CriterionRow(_Frozen):
    id: str
    kind: str
    role: Literal["exit", "step_back", "safety"]
    status: CriterionStatus
    observed: Observed
    threshold: Observed
    unit: str | None
    window: str | None
    explanation: str
    source: str

    @classmethod
    def of(cls, result: CriterionResult) -> CriterionRow:
        return cls.model_validate(result.model_dump(exclude={"client_text"}))


class SessionFigures(_Frozen):
    """One logged session, as the chart plots it."""

    session_id: str
    occurred_at: datetime
    stage_id: str
    pain_during: int
    pain_after: int | None
    next_morning_pain: int | None
    volume: float
    completed: bool
    deload: bool


class CheckinFigures(_Frozen):
    morning_pain: int
    morning_stiffness: int
    swelling: bool


class Correction(_Frozen):
    """A later event's decision, re-decided because this (late) event arrived."""

    occurred_at: datetime
    cause_event_type: str
    outcome: Outcome
    superseded_outcome: Outcome | None
    stage_after: str | None
    summary: str

    @classmethod
    def of(cls, decision: ProgressionEvaluated) -> Correction:
        return cls(
            occurred_at=decision.occurred_at,
            cause_event_type=decision.cause_event_type,
            outcome=decision.outcome,
            superseded_outcome=decision.superseded_outcome,
            stage_after=decision.to_stage,
            summary=decision.summary,
        )


class TimelineItem(_Frozen):
    """One audit entry. `outcome` is None when the event decided nothing (discharge)."""

    seq: int
    entry_id: str
    recorded_at: datetime
    occurred_at: datetime
    event_type: str
    event_id: str
    outcome: Outcome | None
    stage_before: str | None
    stage_after: str
    stage_after_name: str | None
    stage_number: int | None
    stage_count: int | None
    status_after: str
    protocol: str | None
    summary: str
    decided_by: Literal["rules", "clinician"] | None
    clinician_id: str | None
    clinician_action: str | None
    clinician_reason: str | None
    rules_verdict: str | None
    criteria: tuple[CriterionRow, ...]
    session: SessionFigures | None
    checkin: CheckinFigures | None
    supersedes: int | None = None
    superseded_by: int | None = None
    service_version: str | None
    #: Decisions of later events this late event corrected (each names the one it
    #: supersedes), in event time.
    corrections: tuple[Correction, ...] = ()

    @property
    def outcome_label(self) -> str | None:
        """The outcome as people read it: a physio's approval reads **approved**."""
        return outcome_label(self.outcome, self.clinician_action)

    @property
    def stage_changed(self) -> bool:
        return self.stage_before is not None and self.stage_before != self.stage_after


class Timeline(_Frozen):
    client_id: str
    clinic_id: str | None
    protocol: str | None
    items: tuple[TimelineItem, ...]
    unreadable: int = 0

    @property
    def sessions(self) -> tuple[SessionFigures, ...]:
        """The chart's points: the latest version of each session, in event time."""
        points = [i.session for i in self.items if i.session and i.superseded_by is None]
        return tuple(sorted(points, key=lambda s: s.occurred_at))

    @property
    def current(self) -> TimelineItem | None:
        return self.items[-1] if self.items else None


def outcome_label(outcome: str | None, clinician_action: str | None) -> str | None:
    """A clinician's approval reads "approved" (page, history, CSV, FHIR, demo) even
    when other exit criteria still hold the stage: the approval is what happened.
    An approval that unlocks reads "unlocked"; every other outcome reads as recorded."""
    if clinician_action == "approve" and outcome in ("held", "flagged"):
        return "approved"
    return outcome


def decision_label(decision: ProgressionEvaluated) -> str:
    """`outcome_label` from a decision alone (it does not carry the action's kind): a
    clinician's decision that holds without being a hold was an approval."""
    if (
        decision.decided_by == "clinician"
        and decision.cause_event_type == "clinician.action"
        and decision.outcome in ("held", "flagged")
        and not decision.summary.startswith("held by clinician")
    ):
        return "approved"
    return decision.outcome


def recorded_at(entry_id: str) -> datetime:
    """When Redis stored the entry (the stream id's milliseconds)."""
    return datetime.fromtimestamp(int(entry_id.split("-")[0]) / 1000, UTC)


def build_timeline(client_id: str, entries: Sequence[StoredEntry]) -> Timeline:
    """The timeline of one client; entries that are not readable audit entries (a
    tampered trail) are counted, not guessed at: `audit verify` says what broke."""
    items: list[TimelineItem] = []
    unreadable = 0
    session_seq: dict[str, int] = {}
    checkins: list[CheckinLogged] = []
    parsed: list[tuple[StoredEntry, dict[str, Any], Any, ProgressionEvaluated | None]] = []
    for stored in entries:
        try:
            body = json.loads(stored.entry)
            event = INBOUND_ADAPTER.validate_python(body["event"])
            raw_decision = body.get("decision")
            decision = ProgressionEvaluated.model_validate(raw_decision) if raw_decision else None
            int(body["seq"])
        except (ValueError, KeyError, TypeError, ValidationError):
            unreadable += 1
            continue
        parsed.append((stored, body, event, decision))
        if isinstance(event, CheckinLogged):
            checkins.append(event)
    checkins.sort(key=lambda c: c.occurred_at)

    stage_before: str | None = None
    clinic_id = protocol = None
    for stored, body, event, decision in parsed:
        seq = int(body["seq"])
        supersedes = None
        if isinstance(event, SessionLogged):
            supersedes = session_seq.get(event.session_id)
            session_seq[event.session_id] = seq
        stage_after = str(body.get("stage_after", ""))
        clinic_id, protocol = event.clinic_id, (decision.protocol if decision else protocol)
        items.append(
            _item(stored, body, event, decision, stage_before, stage_after, checkins, supersedes)
        )
        stage_before = stage_after
    by_seq = {item.seq: index for index, item in enumerate(items)}
    for item in list(items):
        if item.supersedes is not None and item.supersedes in by_seq:
            index = by_seq[item.supersedes]
            items[index] = items[index].model_copy(update={"superseded_by": item.seq})
    return Timeline(
        client_id=client_id,
        clinic_id=clinic_id,
        protocol=protocol,
        items=tuple(items),
        unreadable=unreadable,
    )


def _item(
    stored: StoredEntry,
    body: dict[str, Any],
    event: Any,
    decision: ProgressionEvaluated | None,
    stage_before: str | None,
    stage_after: str,
    checkins: Sequence[CheckinLogged],
    supersedes: int | None,
) -> TimelineItem:
    clinician = event if isinstance(event, ClinicianAction) else None
    return TimelineItem(
        seq=int(body["seq"]),
        entry_id=stored.entry_id,
        recorded_at=recorded_at(stored.entry_id),
        occurred_at=event.occurred_at,
        event_type=event.event_type,
        event_id=str(event.event_id),
        outcome=decision.outcome if decision else None,
        stage_before=stage_before,
        stage_after=stage_after,
        stage_after_name=decision.to_stage_name if decision else None,
        stage_number=decision.to_stage_number if decision else None,
        stage_count=decision.stage_count if decision else None,
        status_after=str(body.get("status_after", "")),
        protocol=decision.protocol if decision else None,
        summary=decision.summary if decision else _undecided_summary(event),
        decided_by=decision.decided_by if decision else None,
        clinician_id=clinician.clinician_id if clinician else None,
        clinician_action=clinician.action if clinician else None,
        clinician_reason=clinician.reason if clinician else None,
        rules_verdict=rules_verdict(decision) if clinician and decision else None,
        criteria=tuple(CriterionRow.of(c) for c in decision.criteria) if decision else (),
        session=_session(event, stage_before or stage_after, checkins)
        if isinstance(event, SessionLogged)
        else None,
        checkin=CheckinFigures(
            morning_pain=event.morning_pain,
            morning_stiffness=event.morning_stiffness,
            swelling=event.swelling,
        )
        if isinstance(event, CheckinLogged)
        else None,
        supersedes=supersedes,
        service_version=body.get("service_version"),
        corrections=tuple(
            Correction.of(ProgressionEvaluated.model_validate(c))
            for c in body.get("corrections", ())
        ),
    )


def _undecided_summary(event: Any) -> str:
    if isinstance(event, ClientDischarged):
        return "discharged" + (f": {event.reason}" if event.reason else "")
    return f"{event.event_type} recorded; nothing to decide"


def rules_verdict(decision: ProgressionEvaluated) -> str:
    """What the exit criteria alone said at the moment of a clinician action."""
    exits = [c for c in decision.criteria if c.role == "exit"]
    if not exits:
        return "rules alone: no exit criteria to evaluate"
    open_ = [c for c in exits if c.status != "passed"]
    if not open_:
        return f"rules alone: all {len(exits)} exit criteria met (would unlock)"
    words = {"failed": "not met", "unknown": "not known yet"}
    names = "; ".join(f"{c.explanation} ({words.get(c.status, c.status)})" for c in open_)
    return f"rules alone: would hold, {len(open_)} of {len(exits)} exit criteria not met: {names}"


def _session(
    event: SessionLogged, stage_id: str, checkins: Sequence[CheckinLogged]
) -> SessionFigures:
    limit = event.occurred_at + timedelta(hours=NEXT_MORNING_HOURS)
    morning = next((c for c in checkins if event.occurred_at < c.occurred_at <= limit), None)
    return SessionFigures(
        session_id=event.session_id,
        occurred_at=event.occurred_at,
        stage_id=stage_id,
        pain_during=event.pain_during,
        pain_after=event.pain_after,
        next_morning_pain=morning.morning_pain if morning else None,
        volume=SessionRecord.of(event, stage_id).volume,
        completed=event.completed,
        deload=event.deload,
    )
