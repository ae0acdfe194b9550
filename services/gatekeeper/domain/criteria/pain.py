"""Exit criteria on pain: during exercise, the 24-hour response, the weekly trend."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from rehabgate.schemas.outbound import CriterionResult
from rehabgate.services.gatekeeper.domain.history import ClientState

from .base import Kind, Pain, between, checkin_after, num, verdict


class PainDuringMax(Kind):
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
            verdict(worst <= self.max_pain),
            worst,
            self.max_pain,
            f"highest pain during = {worst}/10 (limit {self.max_pain}/10)",
            client_text,
            unit="NRS 0-10",
            window=window,
        )


class NextMorningResponse(Kind):
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
        after = checkin_after(state, latest, self.within_hours)
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
            verdict(ok),
            after.morning_pain,
            self.max_pain,
            detail,
            client_text,
            unit="NRS 0-10",
            window="morning after the latest session",
        )


class MorningTrendNotRising(Kind):
    """Average next-morning pain and stiffness of the last `window_days` not above the
    window before: symptoms are not creeping up week on week."""

    kind: Literal["morning_trend_not_rising"] = "morning_trend_not_rising"
    window_days: Annotated[int, Field(ge=2, le=28)] = 7

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        span = timedelta(days=self.window_days)
        recent = between(state.checkins, now - span, now)
        before = between(state.checkins, now - 2 * span, now - span)
        window = f"last {self.window_days} days vs the {self.window_days} before"
        client_text = "morning pain and stiffness not getting worse from week to week"
        if not recent or not before:
            return self._result(
                "exit", "unknown", None, None,
                "not enough check-ins in both windows to compare", client_text, window=window,
            )  # fmt: skip
        pain_now, pain_then = (
            _mean(c.morning_pain for c in recent),
            _mean(c.morning_pain for c in before),
        )
        stiff_now = _mean(c.morning_stiffness for c in recent)
        stiff_then = _mean(c.morning_stiffness for c in before)
        ok = pain_now <= pain_then and stiff_now <= stiff_then
        return self._result(
            "exit", verdict(ok), pain_now, pain_then,
            f"mean morning pain {num(pain_now)} vs {num(pain_then)}, "
            f"stiffness {num(stiff_now)} vs {num(stiff_then)}",
            client_text, unit="NRS 0-10", window=window,
        )  # fmt: skip


def _mean(values: Iterable[int]) -> float:
    items = list(values)
    return round(sum(items) / len(items), 2)
