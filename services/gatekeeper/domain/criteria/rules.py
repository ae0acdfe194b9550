"""Step-back and safety rules: they judge the session or check-in that just
arrived (logged at `at`) with those before it; `failed` means the rule triggered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from rehabgate.schemas.outbound import CriterionResult
from rehabgate.services.gatekeeper.domain.history import ClientState

from .base import Kind, Pain, Percent, Role, Slug, num, until
from .progress import volume_change


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
        return self._result(
            role,
            "failed" if present else "passed",
            present,
            False,
            f"{self.observation} {'reported' if present else 'not reported'} in the latest session",
            self.label,
            window="latest session",
        )


class VolumeSpikeAbove(Kind):
    """Triggers when the newest session takes volume over the last `window_days` more
    than `max_percent` above the window before (load-spike guard, e.g. 30% over two weeks)."""

    kind: Literal["volume_spike_above"] = "volume_spike_above"
    max_percent: Percent
    window_days: Annotated[int, Field(ge=1, le=28)] = 14
    applies_to: Literal["session"] = "session"

    def evaluate(
        self, state: ClientState, role: Role, at: datetime | None = None
    ) -> CriterionResult:
        now = at or until(state.sessions, at)[-1].occurred_at
        change = volume_change(state, now, self.window_days)
        return self._result(
            role,
            "failed" if change is not None and change > self.max_percent else "passed",
            change,
            self.max_percent,
            f"volume over {self.window_days} days changed by "
            f"{'n/a' if change is None else num(change) + '%'} (rule: above {num(self.max_percent)}%)",
            f"a jump in training load of more than {num(self.max_percent)}%",
            unit="%",
            window=f"last {self.window_days} days vs the {self.window_days} before",
        )
