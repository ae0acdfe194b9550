"""A client's stored state (history.encode_state / decode_state): what the service
writes reads back the same, a state stored before the domain values were msgspec
Structs (by the pydantic model) still reads, and anything else is refused with
UnreadableState, never a crash."""

from __future__ import annotations

import pytest

from rehabgate.services.gatekeeper.domain.history import (
    ClientState,
    ExerciseRecord,
    SetRecord,
    UnreadableState,
    decode_state,
    encode_state,
)
from tests.unit.builders import a_checkin_record, a_session_record, a_state, an_approval, at

#: As the pydantic ClientState of release 0.1.0 stored it (every field written).
STORED_BY_PYDANTIC = b"""{"client_id":"client-0001","clinic_id":"clinic-01","protocol":"achilles-tendinopathy@1","stage_id":"stage-a","stage_entered_at":"2026-11-02T00:00:00Z","status":"active","enrolment":{"event_id":"e14c87b3-742c-4cd3-87d2-ef23b3703fb1","schema_version":1,"occurred_at":"2026-11-02T08:00:00Z","clinic_id":"clinic-01","client_id":"client-0001","correlation_id":null,"event_type":"client.enrolled","protocol":"achilles-tendinopathy@1","start_stage":null,"start_date":"2026-11-02"},"newest":["2026-11-04T00:00:00Z","e"],"applied":3,"sessions":[{"session_id":"s-d690e49881c1","event_id":"6e2594c8-e7dd-4047-bfa4-28e19f1c2c36","occurred_at":"2026-11-02T18:00:00Z","stage_id":"stage-a","pain_during":3,"pain_after":null,"completed":true,"deload":false,"metrics":{},"observations":{},"volume":0.0,"last_set_rpe":null,"exercises":[{"exercise_id":"x","sets":[{"reps":10,"duration_s":null,"rpe":7.0}]}],"phase":null,"short":null}],"checkins":[{"event_id":"d90b0fe7-117e-4386-b564-70aefcff40d7","occurred_at":"2026-11-03T07:00:00Z","morning_pain":2,"morning_stiffness":2,"swelling":false}],"approvals":[{"stage_id":"stage-a","occurred_at":"2026-11-02T12:00:00Z","clinician_id":"physio-07","others_passed":null,"others_pending":[]}]}"""


def a_full_state() -> ClientState:
    exercise = ExerciseRecord(exercise_id="x", sets=(SetRecord(reps=10, rpe=7),))
    return a_state(
        sessions=(a_session_record(exercises=(exercise,), short=()),),
        checkins=(a_checkin_record(),),
        approvals=(an_approval(others_passed=True, others_pending=("pain",)),),
        newest=(at(days=2), "e"),
        applied=3,
    )


def test_a_state_reads_back_as_written_without_its_in_memory_log() -> None:
    state = a_full_state()
    again = decode_state(encode_state(state))
    assert again == state
    assert b'"log"' not in encode_state(state)
    # Where the client stands is always written out, for operators and tools.
    assert b'"stage_id":"stage-a"' in encode_state(state)
    assert b'"status":"active"' in encode_state(state)


def test_a_state_stored_by_the_pydantic_model_still_reads() -> None:
    state = decode_state(STORED_BY_PYDANTIC)
    assert state.sessions[0].exercises[0].sets[0].reps == 10
    assert state.sessions[0].short is None  # worked out from the sets when read
    assert state.enrolment.start_date.isoformat() == "2026-11-02"
    assert state.newest == (at(days=2), "e")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"client_id": 1}',
        STORED_BY_PYDANTIC.replace(b'"pain_during":3', b'"pain_during":"3"'),
        STORED_BY_PYDANTIC.replace(b'"status":"active"', b'"status":"asleep"'),
        STORED_BY_PYDANTIC.replace(b'"schema_version":1', b'"schema_version":"x"'),
        STORED_BY_PYDANTIC.replace(b'"applied":3', b'"applied":3,"surprise":true'),
    ],
)
def test_anything_else_is_refused_as_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableState):
        decode_state(raw)
