"""Exit criteria on time and training: days at stage, sessions done, adherence,
consecutive qualifying sessions, effort, and load progression."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from rehabgate.schemas.outbound import CriterionResult
from rehabgate.services.gatekeeper.domain.history import ClientState

from .base import Kind, Pain, Percent, between, num, until, verdict


class DaysAtStage(Kind):
    """Minimum time at a stage, for tissue adaptation."""

    kind: Literal["days_at_stage"] = "days_at_stage"
    min_days: Annotated[int, Field(ge=0, le=730)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        # Whole days elapsed between two instants: the same whatever UTC offset the
        # clinic wrote either timestamp in.
        days = (now - state.stage_entered_at) // timedelta(days=1)
        return self._result(
            "exit",
            verdict(days >= self.min_days),
            days,
            self.min_days,
            f"{days} full days at this stage (minimum {self.min_days})",
            f"at least {self.min_days} days at this stage ({days} so far)",
            unit="days",
        )


class SessionsCompleted(Kind):
    """Completed sessions at the stage; skipped, incomplete and deload ones never count."""

    kind: Literal["sessions_completed"] = "sessions_completed"
    min_sessions: Annotated[int, Field(ge=1, le=500)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        done = sum(1 for s in state.sessions_at_stage() if s.completed and not s.deload)
        return self._result(
            "exit",
            verdict(done >= self.min_sessions),
            done,
            self.min_sessions,
            f"{done} completed sessions at this stage (minimum {self.min_sessions})",
            f"{self.min_sessions} sessions with every prescribed set done ({done} so far)",
            unit="sessions",
            window="at this stage",
        )


class AdherenceAtLeast(Kind):
    """Completed sessions over the last `window_days`, as a percentage of those prescribed.
    Unknown until the client has been at the stage for the whole window."""

    kind: Literal["adherence_at_least"] = "adherence_at_least"
    min_percent: Percent
    window_days: Annotated[int, Field(ge=1, le=90)]
    sessions_per_week: Annotated[float, Field(gt=0, le=21)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.window_days} days"
        client_text = f"doing at least {num(self.min_percent)}% of your planned sessions"
        start = now - timedelta(days=self.window_days)
        if start < state.stage_entered_at:
            return self._result(
                "exit", "unknown", None, self.min_percent,
                f"less than {self.window_days} days at this stage to judge adherence",
                client_text, unit="%", window=window,
            )  # fmt: skip
        sessions = between(state.sessions_at_stage(), start, now)
        done = sum(1 for s in sessions if s.completed and not s.deload)
        expected = self.sessions_per_week * self.window_days / 7
        percent = round(100 * done / expected, 1)
        return self._result(
            "exit", verdict(percent >= self.min_percent), percent, self.min_percent,
            f"{done} of {num(expected)} planned sessions done ({num(percent)}%)",
            client_text, unit="%", window=window,
        )  # fmt: skip


class ConsecutiveSessions(Kind):
    """The last `count` sessions at the stage were all completed, none a deload, each
    with pain during at most `max_pain` ("complete each phase twice")."""

    kind: Literal["consecutive_sessions"] = "consecutive_sessions"
    count: Annotated[int, Field(ge=1, le=50)]
    max_pain: Pain = 10

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        streak = 0
        for session in reversed(until(state.sessions_at_stage(), now)):
            if not session.completed or session.deload or session.pain_during > self.max_pain:
                break
            streak += 1
        pain = f" with pain at {self.max_pain}/10 or less" if self.max_pain < 10 else ""
        return self._result(
            "exit", verdict(streak >= self.count), streak, self.count,
            f"{streak} qualifying sessions in a row (need {self.count})",
            f"{self.count} full sessions in a row{pain}", unit="sessions", window="at this stage",
        )  # fmt: skip


class EffortAtMost(Kind):
    """Effort of the last set (RPE; RIR = 10 - RPE) at most `max_rpe` in each of the
    last `last_sessions` sessions: the load is comfortably within reach."""

    kind: Literal["effort_at_most"] = "effort_at_most"
    max_rpe: Annotated[float, Field(ge=1, le=10)]
    last_sessions: Annotated[int, Field(ge=1, le=20)] = 2

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.last_sessions} sessions"
        client_text = f"last sets feeling no harder than {num(self.max_rpe)}/10"
        rated = [
            s
            for s in until(state.sessions_at_stage(), now)
            if s.last_set_rpe is not None and not s.deload
        ]
        recent = rated[-self.last_sessions :]
        if len(recent) < self.last_sessions:
            return self._result(
                "exit", "unknown", None, self.max_rpe,
                f"effort (RPE) reported in {len(recent)} of {self.last_sessions} sessions",
                client_text, unit="RPE", window=window,
            )  # fmt: skip
        hardest = max(s.last_set_rpe or 0 for s in recent)
        return self._result(
            "exit", verdict(hardest <= self.max_rpe), hardest, self.max_rpe,
            f"hardest last set RPE {num(hardest)} (limit {num(self.max_rpe)})",
            client_text, unit="RPE", window=window,
        )  # fmt: skip


class VolumeChangeAtMost(Kind):
    """Training volume (reps x load) of the last `window_days` compared with the window
    before: the increase stays within `max_percent` (gradual loading)."""

    kind: Literal["volume_change_at_most"] = "volume_change_at_most"
    max_percent: Percent
    window_days: Annotated[int, Field(ge=1, le=28)] = 7

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        change = volume_change(state, now, self.window_days)
        window = f"last {self.window_days} days vs the {self.window_days} before"
        client_text = f"building up by no more than {num(self.max_percent)}% at a time"
        if change is None:
            return self._result(
                "exit", "unknown", None, self.max_percent,
                "no training volume logged in the earlier window to compare with",
                client_text, unit="%", window=window,
            )  # fmt: skip
        return self._result(
            "exit", verdict(change <= self.max_percent), change, self.max_percent,
            f"volume changed by {num(change)}% (limit {num(self.max_percent)}%)",
            client_text, unit="%", window=window,
        )  # fmt: skip


def volume_change(state: ClientState, now: datetime, window_days: int) -> float | None:
    """Percent change of non-deload volume, last window vs the one before (None: no base)."""
    span = timedelta(days=window_days)
    sessions = [s for s in state.sessions if not s.deload]
    recent = sum(s.volume for s in sessions if now - span < s.occurred_at <= now)
    before = sum(s.volume for s in sessions if now - 2 * span < s.occurred_at <= now - span)
    if before <= 0:
        return None
    return round(100 * (recent - before) / before, 1)
