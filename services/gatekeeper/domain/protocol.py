"""A versioned rehab protocol: ordered stages, each with a prescription, exit
criteria and step-back rules, plus protocol-wide safety rules.

Protocols are reviewable files; this model is their schema (exported as JSON
Schema) and refuses a file whose thresholds do not name a source.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rehabgate.schemas.outbound import Prescription

from .criteria import ExitCriterion, PrescriptionAware, Slug, Trigger

CLINIC_DEFAULT = "clinic default"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StepBackRule(_Model):
    """When `when` triggers: hold at the stage, or regress (to `to_stage` or the previous one)."""

    when: Trigger
    action: Literal["hold", "regress"]
    to_stage: Slug | None = None


class SafetyRule(_Model):
    """When `when` triggers: flag to the physio and pause progression until a clinician acts."""

    when: Trigger


class Stage(_Model):
    id: Slug
    name: str = Field(min_length=1, max_length=80)
    prescription: Prescription
    exit_criteria: Annotated[tuple[ExitCriterion, ...], Field(min_length=1)]
    step_back: tuple[StepBackRule, ...] = ()

    @model_validator(mode="after")
    def _prescribed(self) -> Stage:
        """Give the kinds that check sessions against the prescription this stage's
        (set once, while the frozen stage is built)."""
        exits = tuple(_prescribed(c, self.prescription) for c in self.exit_criteria)
        rules = tuple(
            r.model_copy(update={"when": _prescribed(r.when, self.prescription)})
            for r in self.step_back
        )
        object.__setattr__(self, "exit_criteria", exits)
        object.__setattr__(self, "step_back", rules)
        return self


_Criterion = TypeVar("_Criterion", ExitCriterion, Trigger)


def _prescribed(criterion: _Criterion, prescription: Prescription) -> _Criterion:
    if isinstance(criterion, PrescriptionAware):
        return criterion.model_copy(update={"prescribed": prescription})
    return criterion


class Protocol(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
    version: Annotated[int, Field(ge=1)]
    title: str
    summary: str
    review_note: str = Field(
        description="What a clinician must know before using it (inferred thresholds, scope)."
    )
    sources: dict[str, str] = Field(description="Citation key -> full citation.")
    safety: tuple[SafetyRule, ...] = ()
    stages: Annotated[tuple[Stage, ...], Field(min_length=1)]

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def stage_index(self, stage_id: str) -> int:
        for index, stage in enumerate(self.stages):
            if stage.id == stage_id:
                return index
        raise KeyError(stage_id)

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:
        ids = [stage.id for stage in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError(f"stage ids must be unique, got {ids}")
        for index, stage in enumerate(self.stages):
            for rule in stage.step_back:
                if rule.to_stage is not None and rule.to_stage not in ids[:index]:
                    raise ValueError(
                        f"stage {stage.id!r}: to_stage {rule.to_stage!r} is not an earlier stage"
                    )
                if rule.action == "regress" and rule.to_stage is None and index == 0:
                    raise ValueError(f"stage {stage.id!r}: the first stage cannot regress")
        cited = [c.source for s in self.stages for c in s.exit_criteria]
        cited += [r.when.source for s in self.stages for r in s.step_back]
        cited += [r.when.source for r in self.safety]
        unknown = sorted({c for c in cited if c != CLINIC_DEFAULT and c not in self.sources})
        if unknown:
            raise ValueError(
                f"sources {unknown} are cited but not listed under `sources` "
                f"(name a source, or say {CLINIC_DEFAULT!r})"
            )
        return self
