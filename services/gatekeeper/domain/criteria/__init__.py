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

from typing import Annotated

from pydantic import Field

from .base import Kind, Pain, PrescriptionAware, Role, Slug
from .measures import (
    ClinicianApproval,
    LimbSymmetryAtLeast,
    MetricAtLeast,
    MetricRatioAtLeast,
    NoSwelling,
    ObservationAbsent,
)
from .pain import MorningTrendNotRising, NextMorningResponse, PainDuringMax
from .progress import (
    AdherenceAtLeast,
    ConsecutiveSessions,
    DaysAtStage,
    EachPhaseAtLeast,
    EffortAtMost,
    RepsOverTarget,
    SessionsCompleted,
    VolumeChangeAtMost,
)
from .rules import (
    MorningPainAbove,
    MorningPainRising,
    ObservationReported,
    PainDuringAbove,
    SwellingReported,
    TooHard,
    VolumeSpikeAbove,
)

ExitCriterion = Annotated[
    DaysAtStage
    | SessionsCompleted
    | AdherenceAtLeast
    | ConsecutiveSessions
    | RepsOverTarget
    | EachPhaseAtLeast
    | EffortAtMost
    | VolumeChangeAtMost
    | PainDuringMax
    | NextMorningResponse
    | MorningTrendNotRising
    | MetricAtLeast
    | MetricRatioAtLeast
    | LimbSymmetryAtLeast
    | ObservationAbsent
    | NoSwelling
    | ClinicianApproval,
    Field(discriminator="kind"),
]

Trigger = Annotated[
    PainDuringAbove
    | MorningPainAbove
    | MorningPainRising
    | SwellingReported
    | ObservationReported
    | VolumeSpikeAbove
    | TooHard,
    Field(discriminator="kind"),
]

__all__ = [
    "AdherenceAtLeast",
    "ClinicianApproval",
    "ConsecutiveSessions",
    "DaysAtStage",
    "EachPhaseAtLeast",
    "EffortAtMost",
    "ExitCriterion",
    "Kind",
    "LimbSymmetryAtLeast",
    "MetricAtLeast",
    "MetricRatioAtLeast",
    "MorningPainAbove",
    "MorningPainRising",
    "MorningTrendNotRising",
    "NextMorningResponse",
    "NoSwelling",
    "ObservationAbsent",
    "ObservationReported",
    "Pain",
    "PainDuringAbove",
    "PainDuringMax",
    "PrescriptionAware",
    "RepsOverTarget",
    "Role",
    "SessionsCompleted",
    "Slug",
    "SwellingReported",
    "TooHard",
    "Trigger",
    "VolumeChangeAtMost",
    "VolumeSpikeAbove",
]
