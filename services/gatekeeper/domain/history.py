"""A client's recorded place and history: the input the decision is computed from.

The state holds the records criteria read (sessions, check-ins, approvals, and
the stage each session was logged at), pruned to what any criterion can still
look at, so a step costs the same on day 300 as on day 3. The full event `log`
is needed only to replay a history (a late event, a protocol replay); it is not
part of the stored state: the caller supplies it when an event is late (the audit
trail holds every applied event), either complete or from a checkpoint (`base`: the
state as it was before some day, so the replay's cost grows with the span between
the late event and now, not with the whole history).

The state and its records are msgspec Structs, not pydantic models: a state is
read, copied and written for every event, and Structs do that several times
faster (issue 19). `encode_state` / `decode_state` are its stored form (JSON);
the wire schemas stay pydantic.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import msgspec
from msgspec.structs import replace
from pydantic import BaseModel

from rehabgate.schemas.inbound import (
    CheckinLogged,
    ClientDischarged,
    ClientEnrolled,
    ClinicianAction,
    SessionLogged,
)

Status = Literal["active", "flagged", "on_hold", "completed", "discharged"]
ProgressEvent = SessionLogged | CheckinLogged | ClinicianAction | ClientDischarged


#: How far back criteria look (the longest trend window, twice): older records
#: outside the current stage are dropped from the state; replays rebuild them.
RECORD_HORIZON = timedelta(days=56)

#: Sessions whose logged sets the state keeps: the newest this many of the current
#: stage that are not deloads (and any deloads among them). The most any criterion
#: reads the sets of is reps_over_target's `count` (at most 10); every other reading
#: of the sets is worked out when the session is logged (SessionRecord.short).
EXERCISES_KEPT = 10


#: Day numbers count from this date (intake refuses anything earlier).
DAY_ZERO = date(2000, 1, 1)


class IncompleteHistory(Exception):
    """A late event needs the client's full log (or a checkpoint before it and the
    log since), and the caller did not supply it."""


def day_number(at: datetime) -> int:
    """The UTC day `at` falls on, as a number (days since DAY_ZERO): checkpoints are
    keyed by it."""
    return (at.astimezone(UTC).date() - DAY_ZERO).days


def event_order(event: ClientEnrolled | ProgressEvent) -> tuple[datetime, str]:
    """Event-time order; the event id breaks ties so replays are deterministic."""
    return (event.occurred_at, str(event.event_id))


class Record(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    array_like=True,
):
    """An immutable domain value. Stored as an array of its fields in order (half the
    bytes of an object with its field names, and faster to read), trailing defaults
    left out: so a new field goes at the end, with a default."""


class SetRecord(Record, frozen=True, kw_only=True):
    """One logged set, as the criteria that check it against the prescription read it."""

    reps: int | None = None
    duration_s: float | None = None
    rpe: float | None = None


class ExerciseRecord(Record, frozen=True, kw_only=True):
    exercise_id: str
    sets: tuple[SetRecord, ...] = ()


class SessionRecord(Record, frozen=True, kw_only=True):
    session_id: str
    occurred_at: datetime
    stage_id: str
    pain_during: int
    pain_after: int | None
    completed: bool
    deload: bool
    metrics: dict[str, float]
    observations: dict[str, bool] = {}
    volume: float = 0.0
    last_set_rpe: float | None = None
    #: The sets as logged (empty for records stored before they were kept) and the
    #: phase the client said the session ran, if any.
    exercises: tuple[ExerciseRecord, ...] = ()
    phase: str | None = None
    #: What the logged sets were short of the stage's prescription, in plain words
    #: (prescribed.shortfalls), worked out when the session is logged: so the sets
    #: themselves need not be kept past the last few sessions (EXERCISES_KEPT).
    #: None: not worked out (records stored before it was kept); read the sets.
    short: tuple[str, ...] | None = None

    @classmethod
    def of(cls, event: SessionLogged, stage_id: str) -> SessionRecord:
        """Volume is reps x load summed over sets (reps alone for body-weight sets);
        effort is the highest RPE of any exercise's last set."""
        volume = sum(
            (s.reps or 0) * (s.load_kg if s.load_kg else 1.0)
            for exercise in event.exercises
            for s in exercise.sets
        )
        last_rpes = [e.sets[-1].rpe for e in event.exercises if e.sets and e.sets[-1].rpe]
        return cls(
            session_id=event.session_id,
            occurred_at=event.occurred_at,
            stage_id=stage_id,
            pain_during=event.pain_during,
            pain_after=event.pain_after,
            completed=event.completed,
            deload=event.deload,
            metrics=dict(event.metrics),
            observations=dict(event.observations),
            volume=volume,
            last_set_rpe=max(last_rpes) if last_rpes else None,
            exercises=tuple(
                ExerciseRecord(
                    exercise_id=e.exercise_id,
                    sets=tuple(
                        SetRecord(reps=s.reps, duration_s=s.duration_s, rpe=s.rpe) for s in e.sets
                    ),
                )
                for e in event.exercises
            ),
            phase=event.phase,
        )

    def settled(self, short: tuple[str, ...]) -> SessionRecord:
        """The record as the state keeps it: with its shortfalls against the stage's
        prescription, and of each exercise only its last set (the only set any
        criterion reads once the shortfalls are known: reps_over_target)."""
        return replace(
            self,
            short=short,
            exercises=tuple(replace(e, sets=e.sets[-1:]) for e in self.exercises),
        )


class CheckinRecord(Record, frozen=True, kw_only=True):
    occurred_at: datetime
    morning_pain: int
    morning_stiffness: int
    swelling: bool

    @classmethod
    def of(cls, event: CheckinLogged) -> CheckinRecord:
        return cls(
            occurred_at=event.occurred_at,
            morning_pain=event.morning_pain,
            morning_stiffness=event.morning_stiffness,
            swelling=event.swelling,
        )


class ApprovalRecord(Record, frozen=True, kw_only=True):
    """A clinician's approval at a stage. `others_passed`: whether every other exit
    criterion of the stage had passed when it was given (None: not recorded)."""

    stage_id: str
    occurred_at: datetime
    clinician_id: str
    others_passed: bool | None = None
    others_pending: tuple[str, ...] = ()


class ClientState(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Where a client stands in their protocol, and everything logged so far."""

    client_id: str
    clinic_id: str
    protocol: str
    stage_id: str
    stage_entered_at: datetime
    #: (No default, so the stored form always says it: operators and tools read it.)
    status: Status
    enrolment: ClientEnrolled
    newest: tuple[datetime, str] | None = None
    applied: int = 0
    #: Both in time order (occurred_at), oldest first.
    sessions: tuple[SessionRecord, ...] = ()
    checkins: tuple[CheckinRecord, ...] = ()
    approvals: tuple[ApprovalRecord, ...] = ()
    #: In memory only (never stored: encode_state leaves them out): the events since
    #: `base`, ProgressEvents (typed Any: msgspec does not take pydantic unions) ...
    log: tuple[Any, ...] = ()
    #: ... and where `log` starts: a checkpoint (the state as it was before a day
    #: began; every applied event not in `log` is in it), or None: the enrolment.
    base: ClientState | None = None

    def sessions_at_stage(self) -> tuple[SessionRecord, ...]:
        """Sessions logged since entering the current stage, oldest first (`sessions`
        is in time order, so they are a tail of it: found by bisection)."""
        start = bisect_left(self.sessions, self.stage_entered_at, key=_occurred_at)
        return tuple(s for s in self.sessions[start:] if s.stage_id == self.stage_id)

    def checkins_since(self, since: datetime) -> tuple[CheckinRecord, ...]:
        return tuple(c for c in self.checkins if c.occurred_at >= since)

    def approved_at_stage(self) -> ApprovalRecord | None:
        for approval in reversed(self.approvals):
            if (
                approval.stage_id == self.stage_id
                and approval.occurred_at >= self.stage_entered_at
            ):
                return approval
        return None

    def is_late(self, event: ProgressEvent) -> bool:
        """Whether the event happened before the newest one already applied."""
        return self.newest is not None and event_order(event) < self.newest

    def has_full_log(self) -> bool:
        """Whether `log` holds every applied event since `base` (or the enrolment)."""
        return len(self.log) == self.applied - (self.base.applied if self.base else 0)

    def can_replay(self, event: ProgressEvent) -> bool:
        """Whether `base` and `log` are enough to decide `event` at its own time:
        everything applied is in one or the other, and `base` holds only what came
        before `event`."""
        if not self.has_full_log():
            return False
        return (
            self.base is None or self.base.newest is None or self.base.newest < event_order(event)
        )

    def opens_day(self, event: ProgressEvent) -> int | None:
        """The day number `event` opens, when it is the first applied on or after its
        day (nothing later was applied yet): the state before it is then that day's
        checkpoint. None otherwise."""
        day = day_number(event.occurred_at)
        if self.newest is None or day_number(self.newest[0]) < day:
            return day
        return None

    def knows(self, event: ProgressEvent) -> bool:
        """Whether the event is in the log held in memory (the service's processed
        markers are the authority on what was applied; this keeps pure replays and
        in-memory histories idempotent too)."""
        return any(e.event_id == event.event_id for e in self.log)

    def logged(self, event: ProgressEvent) -> ClientState:
        """This state after applying `event` in time order: logged, counted, and
        with records no criterion can look at any more dropped."""
        newest = max(self.newest, event_order(event)) if self.newest else event_order(event)
        keep_since = min(self.stage_entered_at, newest[0] - RECORD_HORIZON)
        first_session = bisect_left(self.sessions, keep_since, key=_occurred_at)
        first_checkin = bisect_left(self.checkins, keep_since, key=_occurred_at)
        return replace(
            self,
            log=(*self.log, event),
            newest=newest,
            applied=self.applied + 1,
            sessions=self._sets_trimmed(list(self.sessions[first_session:])),
            checkins=self.checkins[first_checkin:],
        )

    def _sets_trimmed(self, sessions: list[SessionRecord]) -> tuple[SessionRecord, ...]:
        """`sessions` with the logged sets dropped from all but the newest
        EXERCISES_KEPT non-deload sessions of the current stage (whose shortfalls
        were worked out when they were logged): the state stays small however
        long a stage lasts. Sessions are in time order and those of the current
        stage are its tail; below them, sets are dropped as far back as sessions
        still carry them (older ones were dropped by an earlier event)."""
        i, counted = len(sessions) - 1, 0
        while i >= 0 and counted < EXERCISES_KEPT:
            s = sessions[i]
            if s.stage_id != self.stage_id or s.occurred_at < self.stage_entered_at:
                break
            counted += not s.deload
            i -= 1
        while i >= 0 and sessions[i].exercises:
            if sessions[i].short is not None:  # (None: stored before; its sets are read)
                sessions[i] = replace(sessions[i], exercises=())
            i -= 1
        return tuple(sessions)

    def with_session(self, record: SessionRecord) -> ClientState:
        """Add a session; a re-sent session id replaces the earlier log (a correction)."""
        kept = [s for s in self.sessions if s.session_id != record.session_id]
        return replace(self, sessions=tuple(sorted([*kept, record], key=lambda s: s.occurred_at)))

    def with_checkin(self, record: CheckinRecord) -> ClientState:
        return replace(
            self, checkins=tuple(sorted([*self.checkins, record], key=lambda c: c.occurred_at))
        )


def _occurred_at(record: SessionRecord | CheckinRecord) -> datetime:
    return record.occurred_at


class UnreadableState(ValueError):
    """A stored state that does not decode as a ClientState."""


def _to_json(value: object) -> object:
    if isinstance(value, BaseModel):  # the enrolment: a wire event, kept as sent
        return value.model_dump_json()
    raise NotImplementedError(f"cannot store {type(value).__name__}")


def _from_json(kind: type, value: object) -> object:
    if kind is ClientEnrolled:
        if isinstance(value, str):
            return ClientEnrolled.model_validate_json(value)
        return ClientEnrolled.model_validate(value)  # (as the pydantic state stored it)
    raise NotImplementedError(f"cannot read {kind.__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_to_json)
_DECODER = msgspec.json.Decoder(ClientState, dec_hook=_from_json)


def encode_state(state: ClientState) -> bytes:
    """A state's stored form: JSON, its records as arrays, without the in-memory `log`
    and `base`."""
    return _ENCODER.encode(replace(state, log=(), base=None))


def decode_state(raw: bytes | str) -> ClientState:
    """A stored state, also one stored before records were arrays (by the pydantic
    model that came before)."""
    try:
        return _DECODER.decode(raw)
    except msgspec.ValidationError as error:
        try:
            return _decode_objects(raw)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
            raise UnreadableState(str(error)) from error
    except msgspec.DecodeError as error:
        raise UnreadableState(str(error)) from error


def _decode_objects(raw: bytes | str) -> ClientState:
    """A state whose records were stored as objects (field name -> value)."""
    stored = msgspec.json.decode(raw)
    if not isinstance(stored, dict):
        raise TypeError("not an object")
    for name, kind in (("sessions", SessionRecord), ("checkins", CheckinRecord),
                       ("approvals", ApprovalRecord)):  # fmt: skip
        stored[name] = [_as_array(kind, record) for record in stored.get(name, ())]
    return msgspec.convert(stored, ClientState, dec_hook=_from_json)


#: Fields records once had, read past in states stored then: a record's event id
#: (nothing read it; the log and the audit trail have the events).
_NO_LONGER_KEPT = {"event_id"}


def _as_array(kind: type[Record], record: object) -> object:
    if not isinstance(record, dict):
        return record
    fields = msgspec.structs.fields(kind)
    unknown = set(record) - {f.name for f in fields} - _NO_LONGER_KEPT
    if unknown:
        raise TypeError(f"unknown fields {sorted(unknown)}")
    nested: dict[str, type[Record]] = {"exercises": ExerciseRecord, "sets": SetRecord}
    values: list[object] = []
    for field in fields:
        if field.name in record:
            value = record[field.name]
            if field.name in nested and isinstance(value, list):
                value = [_as_array(nested[field.name], item) for item in value]
            values.append(value)
        elif field.default is not msgspec.NODEFAULT:
            values.append(field.default)
        elif field.default_factory is not msgspec.NODEFAULT:
            values.append(field.default_factory())
        else:
            raise TypeError(f"{kind.__name__}.{field.name} is missing")
    return values
