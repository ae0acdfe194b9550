"""A client's recorded place and history: the input the decision is computed from.

Only what criteria need is kept (pain, completion, metrics, check-ins,
approvals), ordered by event time so late arrivals land where they belong.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

Status = Literal["active", "flagged", "on_hold", "completed", "discharged"]


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SessionRecord(Record):
    session_id: str
    event_id: str
    occurred_at: AwareDatetime
    stage_id: str
    pain_during: int
    pain_after: int | None
    completed: bool
    deload: bool
    metrics: dict[str, float]


class CheckinRecord(Record):
    event_id: str
    occurred_at: AwareDatetime
    morning_pain: int
    morning_stiffness: int
    swelling: bool


class ApprovalRecord(Record):
    stage_id: str
    occurred_at: AwareDatetime
    clinician_id: str


class ClientState(Record):
    """Where a client stands in their protocol, and everything logged so far."""

    client_id: str
    clinic_id: str
    protocol: str
    stage_id: str
    stage_entered_at: AwareDatetime
    status: Status = "active"
    sessions: tuple[SessionRecord, ...] = ()
    checkins: tuple[CheckinRecord, ...] = ()
    approvals: tuple[ApprovalRecord, ...] = ()

    def sessions_at_stage(self) -> tuple[SessionRecord, ...]:
        """Sessions logged since entering the current stage, oldest first."""
        return tuple(
            s
            for s in self.sessions
            if s.stage_id == self.stage_id and s.occurred_at >= self.stage_entered_at
        )

    def checkins_since(self, since: datetime) -> tuple[CheckinRecord, ...]:
        return tuple(c for c in self.checkins if c.occurred_at >= since)

    def approved_at_stage(self) -> ApprovalRecord | None:
        for approval in reversed(self.approvals):
            if (
                approval.stage_id == self.stage_id
                and approval.occurred_at >= self.stage_entered_at
            ):
                return approval
        return None

    def with_session(self, record: SessionRecord) -> ClientState:
        """Add a session; a re-sent session id replaces the earlier log (a correction)."""
        kept = [s for s in self.sessions if s.session_id != record.session_id]
        return self.model_copy(
            update={"sessions": tuple(sorted([*kept, record], key=lambda s: s.occurred_at))}
        )

    def with_checkin(self, record: CheckinRecord) -> ClientState:
        return self.model_copy(
            update={
                "checkins": tuple(sorted([*self.checkins, record], key=lambda c: c.occurred_at))
            }
        )
