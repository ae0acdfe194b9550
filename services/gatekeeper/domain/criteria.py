"""The criteria language: a closed, typed set of criterion and rule kinds.

Criteria are data (loaded from protocol YAML) with a pure `evaluate`. Each
returns a `CriterionResult` carrying the observed value, the threshold and a
verdict. Missing data is `unknown`, which never counts as a pass.

Exit criteria answer "may the client move on?" (`passed` = yes). Step-back and
safety rules answer "did something go wrong?" (`failed` = the rule triggered).
Rules judge the session or check-in that just arrived (the one logged at `at`,
with those before it), so a flare is acted on once, not again on every later
event, and a late-arriving older log is judged in its own place in time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from rehabgate.schemas.outbound import CriterionResult, CriterionStatus, Observed

from .history import CheckinRecord, ClientState, SessionRecord

Role = Literal["exit", "step_back", "safety"]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Pain = Annotated[int, Field(ge=0, le=10)]


class _Kind(BaseModel):
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


def _verdict(ok: bool) -> CriterionStatus:
    return "passed" if ok else "failed"


# --- exit criteria -----------------------------------------------------------


class DaysAtStage(_Kind):
    """Minimum time at a stage, for tissue adaptation."""

    kind: Literal["days_at_stage"] = "days_at_stage"
    min_days: Annotated[int, Field(ge=0, le=730)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        # Whole days elapsed between two instants: the same whatever UTC offset the
        # clinic wrote either timestamp in.
        days = (now - state.stage_entered_at) // timedelta(days=1)
        return self._result(
            "exit",
            _verdict(days >= self.min_days),
            days,
            self.min_days,
            f"{days} full days at this stage (minimum {self.min_days})",
            f"at least {self.min_days} days at this stage ({days} so far)",
            unit="days",
        )


class SessionsCompleted(_Kind):
    """Completed sessions at the stage; skipped, incomplete and deload ones never count."""

    kind: Literal["sessions_completed"] = "sessions_completed"
    min_sessions: Annotated[int, Field(ge=1, le=500)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        done = sum(1 for s in state.sessions_at_stage() if s.completed and not s.deload)
        return self._result(
            "exit",
            _verdict(done >= self.min_sessions),
            done,
            self.min_sessions,
            f"{done} completed sessions at this stage (minimum {self.min_sessions})",
            f"{self.min_sessions} sessions with every prescribed set done ({done} so far)",
            unit="sessions",
            window="at this stage",
        )


class PainDuringMax(_Kind):
    """Highest pain during exercise over the last K sessions, at most N (pain-monitoring model)."""

    kind: Literal["pain_during_max"] = "pain_during_max"
    max_pain: Pain
    last_sessions: Annotated[int, Field(ge=1, le=50)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.last_sessions} sessions at this stage"
        recent = [s for s in state.sessions_at_stage() if not s.deload][-self.last_sessions :]
        client_text = (
            f"pain during exercise at {self.max_pain}/10 or less "
            f"in your last {self.last_sessions} sessions"
        )
        if len(recent) < self.last_sessions:
            return self._result(
                "exit",
                "unknown",
                None,
                self.max_pain,
                f"only {len(recent)} of {self.last_sessions} sessions logged at this stage",
                client_text,
                unit="NRS 0-10",
                window=window,
            )
        worst = max(s.pain_during for s in recent)
        return self._result(
            "exit",
            _verdict(worst <= self.max_pain),
            worst,
            self.max_pain,
            f"highest pain during = {worst}/10 (limit {self.max_pain}/10)",
            client_text,
            unit="NRS 0-10",
            window=window,
        )


class NextMorningResponse(_Kind):
    """The 24-hour response to the latest session: next-morning pain at most N,
    and (optionally) not above the previous morning."""

    kind: Literal["next_morning_response"] = "next_morning_response"
    max_pain: Pain
    not_above_previous_morning: bool = True
    within_hours: Annotated[int, Field(ge=6, le=72)] = 36

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = f"next-morning pain at {self.max_pain}/10 or less and not worse than before"
        sessions = state.sessions_at_stage()
        if not sessions:
            return self._result(
                "exit",
                "unknown",
                None,
                self.max_pain,
                "no session logged at this stage yet",
                client_text,
                unit="NRS 0-10",
                window="morning after the latest session",
            )
        latest = sessions[-1]
        after = _checkin_after(state, latest, self.within_hours)
        if after is None:
            return self._result(
                "exit",
                "unknown",
                None,
                self.max_pain,
                "waiting for the next-morning check-in after the latest session",
                "waiting for tomorrow's check-in",
                unit="NRS 0-10",
                window="morning after the latest session",
            )
        before = [c for c in state.checkins if c.occurred_at < after.occurred_at]
        rising = (
            self.not_above_previous_morning
            and bool(before)
            and after.morning_pain > before[-1].morning_pain
        )
        ok = after.morning_pain <= self.max_pain and not rising
        detail = f"next-morning pain = {after.morning_pain}/10 (limit {self.max_pain}/10)"
        if before:
            detail += f", previous morning {before[-1].morning_pain}/10"
        return self._result(
            "exit",
            _verdict(ok),
            after.morning_pain,
            self.max_pain,
            detail,
            client_text,
            unit="NRS 0-10",
            window="morning after the latest session",
        )


class MetricAtLeast(_Kind):
    """A measured value (reps, hop distance, limb symmetry index...) at or above a threshold,
    taken from the latest session at the stage that reported it."""

    kind: Literal["metric_at_least"] = "metric_at_least"
    metric: Slug
    min_value: float
    unit: str
    label: str = Field(description="Client words for the metric, e.g. 'single-leg heel raises'.")

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = f"{self.label}: {_num(self.min_value)} {self.unit} or more"
        measured = [s for s in state.sessions_at_stage() if self.metric in s.metrics]
        if not measured:
            return self._result(
                "exit",
                "unknown",
                None,
                self.min_value,
                f"{self.metric} not measured at this stage yet",
                client_text,
                unit=self.unit,
                window="latest measurement at this stage",
            )
        value = measured[-1].metrics[self.metric]
        return self._result(
            "exit",
            _verdict(value >= self.min_value),
            value,
            self.min_value,
            f"{self.metric} = {_num(value)} {self.unit} (minimum {_num(self.min_value)})",
            client_text,
            unit=self.unit,
            window="latest measurement at this stage",
        )


class ClinicianApproval(_Kind):
    """A clinician has approved this gate (return-to-sport and similar)."""

    kind: Literal["clinician_approval"] = "clinician_approval"

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        approval = state.approved_at_stage()
        return self._result(
            "exit",
            _verdict(approval is not None),
            approval.clinician_id if approval else None,
            "approval",
            f"approved by {approval.clinician_id}" if approval else "no clinician approval yet",
            "your physio's go-ahead",
        )


ExitCriterion = Annotated[
    DaysAtStage
    | SessionsCompleted
    | PainDuringMax
    | NextMorningResponse
    | MetricAtLeast
    | ClinicianApproval,
    Field(discriminator="kind"),
]


# --- step-back and safety rules ----------------------------------------------


class PainDuringAbove(_Kind):
    """Triggers when pain during exercise exceeded N in the newest session
    (and in the `consecutive - 1` sessions before it at this stage)."""

    kind: Literal["pain_during_above"] = "pain_during_above"
    above: Pain
    consecutive: Annotated[int, Field(ge=1, le=10)] = 1
    applies_to: Literal["session"] = "session"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        # Deload sessions count here: a deload keeps a session out of progression,
        # never out of safety.
        recent = list(_until(state.sessions_at_stage(), at))[-self.consecutive :]
        pains = [s.pain_during for s in recent]
        triggered = len(recent) == self.consecutive and all(p > self.above for p in pains)
        times = "session" if self.consecutive == 1 else f"{self.consecutive} sessions in a row"
        return self._result(
            role,
            "failed" if triggered else "passed",
            max(pains) if pains else None,
            self.above,
            f"pain during {pains} over the last {times} (rule: above {self.above}/10)",
            f"pain during exercise above {self.above}/10 in {'your last ' + times}",
            unit="NRS 0-10",
            window=f"last {times}",
        )


class MorningPainAbove(_Kind):
    """Triggers when the newest morning check-in reports pain above N."""

    kind: Literal["morning_pain_above"] = "morning_pain_above"
    above: Pain
    applies_to: Literal["checkin"] = "checkin"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        latest = _until(state.checkins, at)[-1]
        return self._result(
            role,
            "failed" if latest.morning_pain > self.above else "passed",
            latest.morning_pain,
            self.above,
            f"morning pain {latest.morning_pain}/10 (rule: above {self.above}/10)",
            f"morning pain above {self.above}/10",
            unit="NRS 0-10",
            window="latest check-in",
        )


class MorningPainRising(_Kind):
    """Triggers when morning pain is higher than the morning before (24-hour rule)."""

    kind: Literal["morning_pain_rising"] = "morning_pain_rising"
    applies_to: Literal["checkin"] = "checkin"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        *earlier, latest = _until(state.checkins, at)
        if not earlier:
            return self._result(
                role,
                "passed",
                latest.morning_pain,
                None,
                "first check-in: nothing to compare with",
                "morning pain higher than the day before",
                unit="NRS 0-10",
                window="latest two check-ins",
            )
        previous = earlier[-1].morning_pain
        return self._result(
            role,
            "failed" if latest.morning_pain > previous else "passed",
            latest.morning_pain,
            previous,
            f"morning pain {latest.morning_pain}/10 vs {previous}/10 the morning before",
            "morning pain higher than the day before",
            unit="NRS 0-10",
            window="latest two check-ins",
        )


class SwellingReported(_Kind):
    """Triggers when the newest check-in reports swelling."""

    kind: Literal["swelling_reported"] = "swelling_reported"
    applies_to: Literal["checkin"] = "checkin"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        swelling = _until(state.checkins, at)[-1].swelling
        return self._result(
            role,
            "failed" if swelling else "passed",
            swelling,
            False,
            "swelling reported at check-in" if swelling else "no swelling reported",
            "new swelling",
            window="latest check-in",
        )


Trigger = Annotated[
    PainDuringAbove | MorningPainAbove | MorningPainRising | SwellingReported,
    Field(discriminator="kind"),
]


_Logged = TypeVar("_Logged", SessionRecord, CheckinRecord)


def _until(records: tuple[_Logged, ...], at: datetime | None) -> tuple[_Logged, ...]:
    """Records logged up to `at` (all of them when `at` is None), oldest first."""
    return records if at is None else tuple(r for r in records if r.occurred_at <= at)


def _checkin_after(
    state: ClientState, session: SessionRecord, within_hours: int
) -> CheckinRecord | None:
    limit = session.occurred_at + timedelta(hours=within_hours)
    for checkin in state.checkins:
        if session.occurred_at < checkin.occurred_at <= limit:
            return checkin
    return None


def _num(value: float) -> str:
    return f"{value:g}"
