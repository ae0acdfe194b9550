"""Typed builders for every inbound event: what a clinic's Python code constructs.

Part of the publisher SDK (`rehabgate.schemas.publisher` re-exports them). Each
builder returns the validated wire model, so a mistake raises here, at the clinic,
rather than becoming a dead letter later; and each fills in what is easy to get
wrong by hand: a fresh UUID `event_id` (the idempotency key) and an `occurred_at`
that carries its UTC offset. This is client code, so it reads a clock (the
default `occurred_at` is now); the gatekeeper never does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any, TypedDict, Unpack
from uuid import UUID, uuid4

from .inbound import (
    ActionKind,
    Channel,
    CheckinLogged,
    ClientContactUpdated,
    ClientDischarged,
    ClientEnrolled,
    ClinicianAction,
    ExerciseLog,
    QuietHours,
    SessionLogged,
    SetLog,
)


def now() -> datetime:
    """The current time with this machine's UTC offset (what `occurred_at` needs)."""
    return datetime.now().astimezone()


def exercise(exercise_id: str, *sets: SetLog | int) -> ExerciseLog:
    """One exercise's performed sets; a plain int is a set of that many reps:
    `exercise("one-leg-heel-raise", 10, 10, 8)`."""
    return ExerciseLog(
        exercise_id=exercise_id,
        sets=tuple(SetLog(reps=s) if isinstance(s, int) else s for s in sets),
    )


class EnvelopeOptions(TypedDict, total=False):
    """Envelope fields every builder accepts; all have sensible defaults."""

    occurred_at: datetime
    event_id: UUID
    correlation_id: str


class Events:
    """Typed builders for every inbound event of one clinic.

    Each returns the validated pydantic model (a mistake raises
    `pydantic.ValidationError` here, not a dead letter later), with a fresh
    `event_id` and `occurred_at` = now unless given. Keep the event and re-send
    the same object to retry safely: its `event_id` makes the retry a no-op.
    """

    def __init__(self, clinic_id: str, clock: Callable[[], datetime] = now) -> None:
        self.clinic_id = clinic_id
        self.clock = clock

    def _envelope(self, client_id: str, options: EnvelopeOptions) -> dict[str, Any]:
        return {
            "event_id": options.get("event_id") or uuid4(),
            "occurred_at": options.get("occurred_at") or self.clock(),
            "clinic_id": self.clinic_id,
            "client_id": client_id,
            "correlation_id": options.get("correlation_id"),
        }

    def client_enrolled(
        self,
        client_id: str,
        protocol: str,
        start_date: date | None = None,
        *,
        start_stage: str | None = None,
        **options: Unpack[EnvelopeOptions],
    ) -> ClientEnrolled:
        """Enrol on `protocol` (`id@version`); starts today at its first stage by default."""
        envelope = self._envelope(client_id, options)
        return ClientEnrolled(
            **envelope,
            protocol=protocol,
            start_date=start_date or envelope["occurred_at"].date(),
            start_stage=start_stage,
        )

    def session_logged(
        self,
        client_id: str,
        session_id: str,
        *,
        pain_during: int,
        completed: bool,
        exercises: Iterable[ExerciseLog] = (),
        pain_after: int | None = None,
        deload: bool = False,
        metrics: Mapping[str, float] | None = None,
        observations: Mapping[str, bool] | None = None,
        **options: Unpack[EnvelopeOptions],
    ) -> SessionLogged:
        """A training session; re-sending the same `session_id` corrects the earlier log."""
        return SessionLogged(
            **self._envelope(client_id, options),
            session_id=session_id,
            pain_during=pain_during,
            completed=completed,
            exercises=tuple(exercises),
            pain_after=pain_after,
            deload=deload,
            metrics=dict(metrics or {}),
            observations=dict(observations or {}),
        )

    def checkin_logged(
        self,
        client_id: str,
        *,
        morning_pain: int,
        morning_stiffness: int,
        swelling: bool,
        **options: Unpack[EnvelopeOptions],
    ) -> CheckinLogged:
        """The next-morning check-in (the 24-hour response to loading)."""
        return CheckinLogged(
            **self._envelope(client_id, options),
            morning_pain=morning_pain,
            morning_stiffness=morning_stiffness,
            swelling=swelling,
        )

    def clinician_action(
        self,
        client_id: str,
        action: ActionKind,
        *,
        reason: str,
        clinician_id: str,
        target_stage: str | None = None,
        **options: Unpack[EnvelopeOptions],
    ) -> ClinicianAction:
        """`approve`, `hold`, `regress` or `advance_override`, always with a reason."""
        return ClinicianAction(
            **self._envelope(client_id, options),
            action=action,
            reason=reason,
            clinician_id=clinician_id,
            target_stage=target_stage,
        )

    def client_contact_updated(
        self,
        client_id: str,
        channel: Channel,
        address: str,
        *,
        locale: str = "en",
        quiet_hours: QuietHours | None = None,
        **options: Unpack[EnvelopeOptions],
    ) -> ClientContactUpdated:
        """Where client messages go; stored apart from health data."""
        return ClientContactUpdated(
            **self._envelope(client_id, options),
            channel=channel,
            address=address,
            locale=locale,
            quiet_hours=quiet_hours,
        )

    def client_discharged(
        self, client_id: str, *, reason: str | None = None, **options: Unpack[EnvelopeOptions]
    ) -> ClientDischarged:
        return ClientDischarged(**self._envelope(client_id, options), reason=reason)
