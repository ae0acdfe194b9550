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
    against: Literal["previous_morning", "stage_baseline"] = Field(
        default="previous_morning",
        description="stage_baseline: also not above the stage's baseline morning pain "
        "(the lower of the last check-in before the stage and its first one), so a "
        "flare that eases but has not settled does not pass.",
    )

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = f"next-morning pain at {self.max_pain}/10 or less and not worse than before"
        if self.against == "stage_baseline":
            client_text = (
                f"next-morning pain at {self.max_pain}/10 or less and back to your usual level"
            )
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
        previous = before[-1].morning_pain if before else None
        baseline = self._baseline(state, after.occurred_at)
        limit = f"limit {self.max_pain}/10"
        rising = []
        if (
            self.not_above_previous_morning
            and previous is not None
            and after.morning_pain > previous
        ):
            rising.append(f"{previous}/10 the morning before")
        if baseline is not None and after.morning_pain > baseline:
            rising.append(f"your {baseline}/10 baseline at this stage")
        if after.morning_pain > self.max_pain:
            detail = (
                f"next-morning pain {after.morning_pain}/10 is above the {self.max_pain}/10 limit"
            )
            if rising:
                detail += ", and rising: above " + " and ".join(rising)
        elif rising:
            detail = (
                f"next-morning pain rising: {after.morning_pain}/10 is above "
                + " and ".join(rising)
                + f" ({limit})"
            )
        else:
            compared = []
            if previous is not None and self.not_above_previous_morning:
                compared.append(f"the morning before ({previous}/10)")
            if baseline is not None:
                compared.append(f"the stage baseline ({baseline}/10)")
            detail = f"next-morning pain {after.morning_pain}/10 ({limit})"
            if compared:
                detail += ", not above " + " or ".join(compared)
        ok = after.morning_pain <= self.max_pain and not rising
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

    def _baseline(self, state: ClientState, before: datetime) -> int | None:
        """The stage's baseline morning pain (`against: stage_baseline`): the lower of
        the last check-in before the stage began and the first one at the stage,
        counting only check-ins before the one judged (clinic default)."""
        if self.against != "stage_baseline":
            return None
        earlier = [c for c in state.checkins if c.occurred_at < before]
        entry = [c for c in earlier if c.occurred_at < state.stage_entered_at][-1:]
        first = [c for c in earlier if c.occurred_at >= state.stage_entered_at][:1]
        candidates = [c.morning_pain for c in (*entry, *first)]
        return min(candidates) if candidates else None


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
