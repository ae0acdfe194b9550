"""Exit criteria on measurements and sign-off: metrics, ratios, limb symmetry,
clinical observations, swelling, clinician approval."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from rehabgate.schemas.outbound import CriterionResult
from rehabgate.services.gatekeeper.domain.history import ClientState

from .base import Kind, Slug, day, num, verdict


class MetricAtLeast(Kind):
    """A measured value (reps, hop distance, limb symmetry index...) at or above a threshold,
    taken from the latest session at the stage that reported it."""

    kind: Literal["metric_at_least"] = "metric_at_least"
    metric: Slug
    min_value: float
    unit: str
    label: str = Field(description="Client words for the metric, e.g. 'single-leg heel raises'.")

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = f"{self.label}: {num(self.min_value)} {self.unit} or more"
        measured = [s for s in state.sessions_at_stage() if self.metric in s.metrics]
        if not measured:
            return self._result(
                "exit",
                "unknown",
                None,
                self.min_value,
                f"{self.label} not measured at this stage yet",
                client_text,
                unit=self.unit,
                window="latest measurement at this stage",
            )
        value = measured[-1].metrics[self.metric]
        return self._result(
            "exit",
            verdict(value >= self.min_value),
            value,
            self.min_value,
            f"{self.label}: {num(value)} {self.unit} (minimum {num(self.min_value)})",
            client_text,
            unit=self.unit,
            window="latest measurement at this stage",
        )


class ClinicianApproval(Kind):
    """A clinician has approved this gate (return-to-sport and similar).

    With `after_other_criteria`, an approval counts only when it was given after
    every other exit criterion of the stage had passed, and only until a new session
    or check-in arrives at the stage: a later result needs a new approval."""

    kind: Literal["clinician_approval"] = "clinician_approval"
    after_other_criteria: bool = False

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        approval = state.approved_at_stage()
        client_text = "your physio's go-ahead"
        if approval is None or approval.occurred_at > now:
            return self._result(
                "exit", "failed", None, "approval", "no clinician approval yet", client_text
            )
        given = f"approval by {approval.clinician_id} on {day(approval.occurred_at)}"
        if self.after_other_criteria:
            client_text = "your physio's go-ahead, once your other goals are met"
            if approval.others_passed is not True:
                pending = ", ".join(approval.others_pending) or "not recorded"
                return self._result(
                    "exit", "failed", approval.clinician_id, "approval",
                    f"{given} does not count: it was given before the other exit criteria "
                    f"had passed (then not met: {pending}); a new approval is needed",
                    client_text,
                )  # fmt: skip
            logged = [s.occurred_at for s in state.sessions_at_stage()]
            logged += [c.occurred_at for c in state.checkins_since(state.stage_entered_at)]
            newer = [t for t in logged if approval.occurred_at < t <= now]
            if newer:
                return self._result(
                    "exit", "failed", approval.clinician_id, "approval",
                    f"{given} no longer counts: new results were logged after it "
                    f"({day(max(newer))}); a new approval is needed",
                    client_text,
                )  # fmt: skip
        return self._result(
            "exit", "passed", approval.clinician_id, "approval", f"approved: {given}", client_text
        )


class MetricRatioAtLeast(Kind):
    """A metric relative to another, e.g. squat load per kg of body weight, at least
    `min_ratio`; both from the latest session at the stage that reported both."""

    kind: Literal["metric_ratio_at_least"] = "metric_ratio_at_least"
    metric: Slug
    per_metric: Slug
    min_ratio: Annotated[float, Field(gt=0)]
    label: str

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = f"{self.label}: {num(self.min_ratio)} or more"
        both = [s for s in state.sessions_at_stage()
                if self.metric in s.metrics and s.metrics.get(self.per_metric, 0) > 0]  # fmt: skip
        if not both:
            return self._result(
                "exit", "unknown", None, self.min_ratio,
                f"{self.label}: not both values measured at this stage",
                client_text, unit="ratio",
            )  # fmt: skip
        latest = both[-1].metrics
        ratio = round(latest[self.metric] / latest[self.per_metric], 3)
        return self._result(
            "exit", verdict(ratio >= self.min_ratio), ratio, self.min_ratio,
            f"{self.label}: {num(latest[self.metric])} / {num(latest[self.per_metric])} = "
            f"{num(ratio)} (minimum {num(self.min_ratio)})",
            client_text, unit="ratio", window="latest measurement at this stage",
        )  # fmt: skip


class LimbSymmetryAtLeast(Kind):
    """Limb symmetry index = involved / uninvolved x 100 (hop tests, strength), at
    least `min_percent`; from the latest session at the stage that measured both sides."""

    kind: Literal["limb_symmetry_at_least"] = "limb_symmetry_at_least"
    involved: Slug
    uninvolved: Slug
    min_percent: Annotated[float, Field(gt=0, le=200)]
    label: str

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = f"{self.label}: injured side at least {num(self.min_percent)}% of the other"
        both = [s for s in state.sessions_at_stage()
                if self.involved in s.metrics and s.metrics.get(self.uninvolved, 0) > 0]  # fmt: skip
        if not both:
            return self._result(
                "exit", "unknown", None, self.min_percent,
                f"{self.label} not measured on both sides at this stage", client_text, unit="% LSI",
            )  # fmt: skip
        latest = both[-1].metrics
        lsi = round(100 * latest[self.involved] / latest[self.uninvolved], 1)
        return self._result(
            "exit", verdict(lsi >= self.min_percent), lsi, self.min_percent,
            f"LSI {num(lsi)}% ({num(latest[self.involved])} / {num(latest[self.uninvolved])})",
            client_text, unit="% LSI", window="latest measurement at this stage",
        )  # fmt: skip


class ObservationAbsent(Kind):
    """A yes/no observation (limp, giving way, insecurity on a named test) reported as
    absent in each of the last `last_sessions` sessions; not reported counts as unknown."""

    kind: Literal["observation_absent"] = "observation_absent"
    observation: Slug
    label: str
    last_sessions: Annotated[int, Field(ge=1, le=20)] = 1

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.last_sessions} sessions"
        sessions = state.sessions_at_stage()
        reported = [s for s in sessions if self.observation in s.observations]
        recent = reported[-self.last_sessions :]
        if len(recent) < self.last_sessions:
            return self._result(
                "exit", "unknown", None, False,
                f"{self.label}: answered in {len(recent)} of the {self.last_sessions} sessions "
                f"needed; not reported yet in the rest",
                f"no {self.label} (not reported yet)", window=window,
            )  # fmt: skip
        present = [s for s in recent if s.observations[self.observation]]
        if present:
            explanation = f"{self.label}: reported on " + ", ".join(
                day(s.occurred_at) for s in present
            )
            client_text = f"no {self.label} (you reported it recently)"
        else:
            explanation = f"{self.label}: answered no in the {window}"
            client_text = f"no {self.label}"
        return self._result(
            "exit", verdict(not present), bool(present), False, explanation, client_text,
            window=window,
        )  # fmt: skip


class NoSwelling(Kind):
    """No swelling at any of the last `last_checkins` check-ins at this stage."""

    kind: Literal["no_swelling"] = "no_swelling"
    last_checkins: Annotated[int, Field(ge=1, le=30)] = 2

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.last_checkins} check-ins"
        recent = state.checkins_since(state.stage_entered_at)[-self.last_checkins :]
        if len(recent) < self.last_checkins:
            return self._result(
                "exit", "unknown", None, False,
                f"{len(recent)} of {self.last_checkins} check-ins at this stage",
                "no swelling at your check-ins", window=window,
            )  # fmt: skip
        swelling = any(c.swelling for c in recent)
        return self._result(
            "exit", verdict(not swelling), swelling, False,
            f"swelling {'reported' if swelling else 'not reported'} in the {window}",
            "no swelling at your check-ins", window=window,
        )  # fmt: skip
