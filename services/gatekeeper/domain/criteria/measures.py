"""Exit criteria on measurements and sign-off: metrics, ratios, limb symmetry,
clinical observations, swelling, clinician approval."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from rehabgate.schemas.outbound import CriterionResult
from rehabgate.services.gatekeeper.domain.history import ClientState

from .base import Kind, Slug, num, verdict


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
                f"{self.metric} not measured at this stage yet",
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
            f"{self.metric} = {num(value)} {self.unit} (minimum {num(self.min_value)})",
            client_text,
            unit=self.unit,
            window="latest measurement at this stage",
        )


class ClinicianApproval(Kind):
    """A clinician has approved this gate (return-to-sport and similar)."""

    kind: Literal["clinician_approval"] = "clinician_approval"

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        approval = state.approved_at_stage()
        return self._result(
            "exit",
            verdict(approval is not None),
            approval.clinician_id if approval else None,
            "approval",
            f"approved by {approval.clinician_id}" if approval else "no clinician approval yet",
            "your physio's go-ahead",
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
                f"{self.metric} and {self.per_metric} not both measured at this stage",
                client_text, unit="ratio",
            )  # fmt: skip
        latest = both[-1].metrics
        ratio = round(latest[self.metric] / latest[self.per_metric], 3)
        return self._result(
            "exit", verdict(ratio >= self.min_ratio), ratio, self.min_ratio,
            f"{self.metric} / {self.per_metric} = {num(ratio)} (minimum {num(self.min_ratio)})",
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
        reported = [s for s in state.sessions_at_stage() if self.observation in s.observations]
        recent = reported[-self.last_sessions :]
        if len(recent) < self.last_sessions:
            return self._result(
                "exit", "unknown", None, False,
                f"{self.observation} reported in {len(recent)} of {self.last_sessions} sessions",
                f"no {self.label}", window=window,
            )  # fmt: skip
        present = any(s.observations[self.observation] for s in recent)
        return self._result(
            "exit", verdict(not present), present, False,
            f"{self.observation} {'reported' if present else 'absent'} in the {window}",
            f"no {self.label}", window=window,
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
