"""Inbound events: what clinic systems publish to the gatekeeper (SPEC §3)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, TypeAdapter

from .envelope import Envelope, PseudonymousId, WireModel

Pain = Annotated[int, Field(ge=0, le=10, description="Numeric rating scale, 0-10.")]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ProtocolRef = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}@[1-9][0-9]{0,5}$"),
    Field(description="Protocol id and version, e.g. achilles-tendinopathy@1"),
]
Reason = Annotated[str, StringConstraints(min_length=3, max_length=500, strip_whitespace=True)]
ActionKind = Literal["approve", "hold", "regress", "advance_override"]
Channel = Literal["stream", "email", "webhook"]


class SetLog(WireModel):
    """One performed set. Reps or time, optional load and effort."""

    reps: Annotated[int, Field(ge=0, le=1000)] | None = None
    duration_s: Annotated[float, Field(ge=0, le=86_400)] | None = None
    load_kg: Annotated[float, Field(ge=0, le=1000)] | None = None
    rpe: Annotated[float, Field(ge=1, le=10)] | None = None


class ExerciseLog(WireModel):
    exercise_id: Slug
    sets: Annotated[tuple[SetLog, ...], Field(max_length=50)]


class ClientEnrolled(Envelope):
    event_type: Literal["client.enrolled"] = "client.enrolled"
    protocol: ProtocolRef
    start_stage: Slug | None = Field(
        default=None, description="Stage id to start at; the protocol's first stage if absent."
    )
    start_date: date


class SessionLogged(Envelope):
    event_type: Literal["session.logged"] = "session.logged"
    session_id: PseudonymousId
    exercises: Annotated[tuple[ExerciseLog, ...], Field(max_length=50)] = ()
    pain_during: Pain
    pain_after: Pain | None = None
    completed: bool = Field(description="All prescribed sets and reps were done.")
    deload: bool = Field(
        default=False, description="A planned deload; never counts toward progression."
    )
    metrics: dict[Slug, Annotated[float, Field(ge=-1e6, le=1e6)]] = Field(
        default_factory=dict,
        max_length=32,
        description=(
            "Optional measurements, e.g. single_leg_heel_raise_reps, hop_distance_cm_involved and "
            "hop_distance_cm_uninvolved (for a limb symmetry index), body_weight_kg."
        ),
    )
    observations: dict[Slug, bool] = Field(
        default_factory=dict,
        max_length=32,
        description="Yes/no clinical observations, e.g. limp, giving_way, h_test_insecurity.",
    )
    phase: Slug | None = Field(
        default=None,
        description=(
            "Which phase of the stage this session ran (the protocol's phase id, e.g. "
            "walk-run-1); protocols that count sessions per phase need it."
        ),
    )


class CheckinLogged(Envelope):
    event_type: Literal["checkin.logged"] = "checkin.logged"
    morning_pain: Pain
    morning_stiffness: Pain
    swelling: bool


class ClinicianAction(Envelope):
    event_type: Literal["clinician.action"] = "clinician.action"
    action: ActionKind
    reason: Reason
    clinician_id: PseudonymousId
    target_stage: Slug | None = Field(
        default=None, description="For regress: the stage to go back to (default: previous)."
    )


class QuietHours(WireModel):
    start: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    end: Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"


class ClientContactUpdated(Envelope):
    """Contact details: stored apart from health data, erasable, never logged."""

    event_type: Literal["client.contact.updated"] = "client.contact.updated"
    channel: Channel
    address: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    locale: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")] = "en"
    quiet_hours: QuietHours | None = None


class ClientDischarged(Envelope):
    event_type: Literal["client.discharged"] = "client.discharged"
    reason: Reason | None = None


InboundEvent = Annotated[
    ClientEnrolled
    | SessionLogged
    | CheckinLogged
    | ClinicianAction
    | ClientContactUpdated
    | ClientDischarged,
    Field(discriminator="event_type"),
]

INBOUND_ADAPTER: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)


def parse_inbound(raw: bytes | str) -> InboundEvent:
    """Validate one JSON document as an inbound event (raises pydantic.ValidationError).

    Strict: the JSON types the published schema states, no coercion ("3" is not an
    integer, `true` is not 1, "yes" is not a boolean); strings only where JSON has
    no type of its own (UUIDs, dates, times). Malformed JSON, invalid UTF-8 and
    nesting past the parser's depth limit are validation errors of type
    `json_invalid`, never a RecursionError."""
    return INBOUND_ADAPTER.validate_json(raw, strict=True)
