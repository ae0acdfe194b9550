"""What every criterion and rule kind shares: identity, source, and its result."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from rehabgate.schemas.outbound import CriterionResult, CriterionStatus, Observed, Prescription
from rehabgate.services.gatekeeper.domain.history import CheckinRecord, ClientState, SessionRecord

Role = Literal["exit", "step_back", "safety"]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Pain = Annotated[int, Field(ge=0, le=10)]
Percent = Annotated[float, Field(ge=0, le=1000)]


class Kind(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    id: Slug
    source: str = Field(
        min_length=3, description="Citation key of the threshold, or 'clinic default'."
    )

    def _result(
        self,
        role: Role,
        status: CriterionStatus,
        observed: Observed,
        threshold: Observed,
        explanation: str,
        client_text: str,
        unit: str | None = None,
        window: str | None = None,
    ) -> CriterionResult:
        return CriterionResult(
            id=self.id,
            kind=self.kind,
            role=role,
            status=status,
            observed=observed,
            threshold=threshold,
            unit=unit,
            window=window,
            explanation=explanation,
            client_text=client_text,
            source=self.source,
        )


class PrescriptionAware(Kind):
    """A kind that reads the stage's prescription (sets, reps, hold times). The protocol
    fills `prescribed` from the stage when it loads; protocol files never write it."""

    prescribed: SkipJsonSchema[Prescription | None] = Field(default=None, exclude=True)


def day(at: datetime) -> str:
    """A session's date as the client wrote it (its own offset): 'Mon 2 Nov'."""
    return f"{at:%a} {at.day} {at:%b}"


def verdict(ok: bool) -> CriterionStatus:
    return "passed" if ok else "failed"


_Logged = TypeVar("_Logged", SessionRecord, CheckinRecord)


def until(records: tuple[_Logged, ...], at: datetime | None) -> tuple[_Logged, ...]:
    """Records logged up to `at` (all of them when `at` is None), oldest first. (The
    state keeps them in time order: when the newest is not after `at`, none is.)"""
    if at is None or not records or records[-1].occurred_at <= at:
        return records
    return tuple(r for r in records if r.occurred_at <= at)


def between(records: tuple[_Logged, ...], start: datetime, end: datetime) -> tuple[_Logged, ...]:
    """Records with start < occurred_at <= end."""
    return tuple(r for r in records if start < r.occurred_at <= end)


def checkin_after(
    state: ClientState, session: SessionRecord, within_hours: int
) -> CheckinRecord | None:
    limit = session.occurred_at + timedelta(hours=within_hours)
    for checkin in state.checkins:
        if session.occurred_at < checkin.occurred_at <= limit:
            return checkin
    return None


def num(value: float) -> str:
    return f"{value:g}"
