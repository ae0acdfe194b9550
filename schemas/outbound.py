"""Outbound events: decisions from the gatekeeper, messages and receipts from the notifier."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from .envelope import Envelope, WireModel
from .inbound import ProtocolRef, Slug

Outcome = Literal["held", "unlocked", "regressed", "flagged", "completed"]
CriterionStatus = Literal["passed", "failed", "unknown"]
Observed = float | int | bool | str | None


class CriterionResult(WireModel):
    """One criterion or rule, evaluated: what was seen, against what, and the verdict.

    `role` says which list of the protocol it came from: an exit criterion (all
    must pass to unlock), a step-back rule or a safety rule (`failed` means the
    rule triggered).
    """

    id: Slug
    kind: str
    role: Literal["exit", "step_back", "safety"]
    status: CriterionStatus
    observed: Observed
    threshold: Observed
    unit: str | None = None
    window: str | None = None
    explanation: str = Field(description="For the physio: the rule and the numbers.")
    client_text: str = Field(description="For the client: plain words, no jargon.")
    source: str = Field(description="Where the threshold comes from, or 'clinic default'.")


class PrescribedExercise(WireModel):
    id: Slug
    name: str
    sets: Annotated[int, Field(ge=1, le=20)]
    reps: Annotated[int, Field(ge=1, le=200)] | None = None
    hold_s: Annotated[int, Field(ge=1, le=3600)] | None = None
    load: str | None = Field(default=None, description="e.g. 'body weight', '+10% body weight'")
    frequency: str = Field(description="e.g. 'daily', '3x per week'")


class Prescription(WireModel):
    """What a stage asks of the client, in the words the client sees."""

    summary: str
    exercises: tuple[PrescribedExercise, ...]
    notes: tuple[str, ...] = ()


class ProgressionEvaluated(Envelope):
    """A decision. Deterministic: replaying the same history gives the same one."""

    event_type: Literal["progression.evaluated"] = "progression.evaluated"
    decision_id: UUID = Field(description="Idempotency key for everything downstream.")
    outcome: Outcome
    protocol: ProtocolRef
    from_stage: Slug | None
    to_stage: Slug | None
    to_stage_name: str | None = None
    to_stage_number: int | None = None
    stage_count: int
    prescription: Prescription | None = Field(
        default=None, description="What the client's current stage asks, after this decision."
    )
    summary: str = Field(description="One line for the physio: why this outcome.")
    criteria: tuple[CriterionResult, ...]
    cause_event_id: UUID
    cause_event_type: str
    decided_by: Literal["rules", "clinician"] = "rules"
    clinician_id: str | None = None
    clinician_reason: str | None = None
    supersedes: UUID | None = Field(
        default=None,
        description="Set on a correction: the decision it replaces. A late event re-decided "
        "a later one differently; read in event time, the correction counts, not the old one.",
    )
    superseded_outcome: Outcome | None = Field(
        default=None, description="On a correction: the outcome of the decision it replaces."
    )
    notice: Literal["told", "silent", "taken_back"] | None = Field(
        default=None,
        description="Set on a late event's decisions (its own and its corrections): what "
        "the client is told of it. `silent`: nothing (no news to them: e.g. a stage "
        "reached earlier than they were told); `told`: as its outcome says; `taken_back`: "
        "an unlock or completion they were told of no longer holds. Unset: the usual rules.",
    )
    corrected_after: UUID | None = Field(
        default=None,
        description="On a correction: the late event whose arrival re-decided this one "
        "(its other corrections and its own decision form one catch-up).",
    )


class ClientMessage(WireModel):
    """A message for one client, as written to the client-messages stream."""

    message_id: UUID = Field(
        description="The idempotency key: the id of the (first) decision this message covers."
    )
    decision_id: UUID = Field(description="The first decision this message covers.")
    decision_ids: tuple[UUID, ...] = Field(
        default=(),
        description="Every decision this message covers, in order: one, or several when "
        "decisions close together in time were coalesced into one message.",
    )
    clinic_id: str
    client_id: str
    outcome: Outcome
    locale: str
    title: str
    body: str
    created_at: AwareDatetime


class DeliveryReceipt(WireModel):
    """Notifier → clinic: a message was delivered, or delivery failed for good."""

    event_type: Literal["message.delivered", "message.failed"]
    message_id: UUID
    decision_id: UUID
    clinic_id: str
    client_id: str
    channel: Literal["stream", "email", "webhook"]
    at: AwareDatetime
    reason: str | None = None


class PhysioAlert(WireModel):
    """Notifier → clinic physio channel: a client was flagged, or late entries took back
    an unlock or completion (a correction). Ids and the reason only;
    the full decision (every criterion) is on the evaluated stream and the audit trail."""

    event_type: Literal["physio.alert"] = "physio.alert"
    decision_id: UUID
    clinic_id: str
    client_id: str
    protocol: ProtocolRef
    rule_ids: tuple[str, ...] = Field(
        description="The safety rules that triggered (none for a withdrawn unlock)."
    )
    reason: str = Field(description="The decision's one-line summary for the physio.")
    occurred_at: AwareDatetime = Field(description="When the flagging event happened.")
