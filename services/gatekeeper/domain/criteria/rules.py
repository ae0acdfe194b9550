"""Step-back and safety rules: they judge the session or check-in that just
arrived (logged at `at`) with those before it; `failed` means the rule triggered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from rehabgate.schemas.outbound import CriterionResult, CriterionStatus
from rehabgate.services.gatekeeper.domain.history import ClientState

from .base import Kind, Pain, Percent, PrescriptionAware, Role, Slug, day, num, until
from .prescribed import shortfalls
from .progress import volume_change, weekly_change


class PainDuringAbove(Kind):
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
        recent = list(until(state.sessions_at_stage(), at))[-self.consecutive :]
        pains = [s.pain_during for s in recent]
        triggered = len(recent) == self.consecutive and all(p > self.above for p in pains)
        times = "session" if self.consecutive == 1 else f"{self.consecutive} sessions in a row"
        if not pains:
            seen = "no session logged at this stage yet"
        elif len(pains) == 1:
            seen = f"pain during {pains[0]}/10 in the latest session"
        else:
            seen = "pain during " + ", ".join(f"{p}/10" for p in pains)
            seen += f" in the last {len(pains)} sessions"
        rule = f"above {self.above}/10" + ("" if self.consecutive == 1 else f" {times}")
        return self._result(
            role,
            "failed" if triggered else "passed",
            max(pains) if pains else None,
            self.above,
            f"{seen} (rule: {rule})",
            f"pain during exercise above {self.above}/10 in {'your last ' + times}",
            unit="NRS 0-10",
            window=f"last {times}",
        )


class MorningPainAbove(Kind):
    """Triggers when the newest morning check-in reports pain above N."""

    kind: Literal["morning_pain_above"] = "morning_pain_above"
    above: Pain
    applies_to: Literal["checkin"] = "checkin"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        latest = until(state.checkins, at)[-1]
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


class MorningPainRising(Kind):
    """Triggers when morning pain is higher than the morning before (24-hour rule)."""

    kind: Literal["morning_pain_rising"] = "morning_pain_rising"
    applies_to: Literal["checkin"] = "checkin"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        *earlier, latest = until(state.checkins, at)
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
        rising = latest.morning_pain > previous
        return self._result(
            role,
            "failed" if rising else "passed",
            latest.morning_pain,
            previous,
            f"morning pain {'rising' if rising else 'not rising'}: {latest.morning_pain}/10 "
            f"vs {previous}/10 the morning before",
            "morning pain higher than the day before",
            unit="NRS 0-10",
            window="latest two check-ins",
        )


class SwellingReported(Kind):
    """Triggers when the newest check-in reports swelling."""

    kind: Literal["swelling_reported"] = "swelling_reported"
    applies_to: Literal["checkin"] = "checkin"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        swelling = until(state.checkins, at)[-1].swelling
        return self._result(
            role,
            "failed" if swelling else "passed",
            swelling,
            False,
            "swelling reported at check-in" if swelling else "no swelling reported",
            "new swelling",
            window="latest check-in",
        )


class ObservationReported(Kind):
    """Triggers when the newest session reports a yes/no observation as present
    (e.g. limp, giving way, insecurity on the H-test)."""

    kind: Literal["observation_reported"] = "observation_reported"
    observation: Slug
    label: str
    applies_to: Literal["session"] = "session"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        latest = until(state.sessions, at)[-1]
        present = latest.observations.get(self.observation)
        status: CriterionStatus
        if present is None:
            # Not asked or not answered: unknown, never "no" (it triggers nothing).
            status, seen = "unknown", "not reported in the latest session"
        elif present:
            status, seen = "failed", "reported in the latest session"
        else:
            status, seen = "passed", "answered no in the latest session"
        return self._result(
            role,
            status,
            present,
            False,
            f"{self.label}: {seen}",
            self.label,
            window="latest session",
        )


class VolumeSpikeAbove(Kind):
    """Triggers when the newest session takes volume over the last `window_days` more
    than `max_percent` above the window before (load-spike guard, e.g. 30% over two weeks)."""

    kind: Literal["volume_spike_above"] = "volume_spike_above"
    max_percent: Percent
    window_days: Annotated[int, Field(ge=1, le=28)] = 14
    training_weeks: bool = Field(
        default=False,
        description="Compare training weeks in the client's time zone `weeks_apart` apart "
        "(Nielsen 2014: a week against the week two weeks before), not rolling windows.",
    )
    weeks_apart: Annotated[int, Field(ge=1, le=4)] = 2
    applies_to: Literal["session"] = "session"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        now = at or until(state.sessions, at)[-1].occurred_at
        if self.training_weeks:
            change, detail = weekly_change(state, now, self.weeks_apart)
            window = (
                "training week vs the week before"
                if self.weeks_apart == 1
                else f"training week vs the week {self.weeks_apart} weeks earlier"
            )
        else:
            change = volume_change(state, now, self.window_days)
            detail = (
                ""
                if change is None
                else (f"volume over {self.window_days} days changed by {num(change)}%")
            )
            window = f"last {self.window_days} days vs the {self.window_days} before"
        if change is None:
            detail = "no earlier training volume to compare with"
        return self._result(
            role,
            "failed" if change is not None and change > self.max_percent else "passed",
            change,
            self.max_percent,
            f"{detail} (rule: above {num(self.max_percent)}%)",
            f"a jump in training load of more than {num(self.max_percent)}%",
            unit="%",
            window=window,
        )


class TooHard(PrescriptionAware):
    """Triggers when the newest session and the `sessions - 1` before it at this stage
    (deloads skipped) were each too hard: the last set's effort at or above
    `rpe_at_least`, or (with `missed_reps`) prescribed reps missed (sets logged short
    of the prescription, or the session not completed). The step-back rule's action
    says what follows: hold with a load reduction of `reduce_load_percent`, or regress."""

    kind: Literal["too_hard"] = "too_hard"
    rpe_at_least: Annotated[float, Field(ge=1, le=10)] | None = 10
    missed_reps: bool = True
    sessions: Annotated[int, Field(ge=1, le=10)] = 2
    reduce_load_percent: Annotated[float, Field(gt=0, le=50)] | None = None
    applies_to: Literal["session"] = "session"

    @model_validator(mode="after")
    def _reads_something(self) -> TooHard:
        if self.rpe_at_least is None and not self.missed_reps:
            raise ValueError("too_hard needs rpe_at_least, missed_reps, or both")
        return self

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        recent = [s for s in until(state.sessions_at_stage(), at) if not s.deload]
        recent = recent[-self.sessions :]
        hard = []
        for s in recent:
            reasons = []
            rpe = s.last_set_rpe
            if self.rpe_at_least is not None and rpe is not None and rpe >= self.rpe_at_least:
                reasons.append(f"last set effort {num(rpe)}/10")
            if self.missed_reps:
                missed = shortfalls(s, self.prescribed)
                if missed:
                    reasons.append("reps missed: " + "; ".join(missed))
                elif not s.completed:
                    reasons.append("not all prescribed sets and reps done")
            if reasons:
                hard.append(f"{day(s.occurred_at)}: " + ", ".join(reasons))
        triggered = len(recent) == self.sessions and len(hard) == self.sessions
        times = (
            "the latest session" if self.sessions == 1 else f"{self.sessions} sessions in a row"
        )
        signs = []
        if self.rpe_at_least is not None:
            signs.append(f"an effort of {num(self.rpe_at_least)}/10")
        if self.missed_reps:
            signs.append("reps missed")
        rule = " or ".join(signs) + f", in {times}"
        seen = " | ".join(hard) if hard else "no session too hard"
        advice = ""
        if self.reduce_load_percent is not None:
            advice = f": lower the weight by {num(self.reduce_load_percent)}% next session"
        when = "in your last session" if self.sessions == 1 else times
        return self._result(
            role,
            "failed" if triggered else "passed",
            len(hard),
            self.sessions,
            f"{seen} (rule: {rule})" + (advice.replace(": lower", "; lower") if triggered else ""),
            f"sessions that were too hard ({' or '.join(signs)}) {when}{advice}",
            unit="sessions",
            window=f"last {self.sessions} sessions",
        )
