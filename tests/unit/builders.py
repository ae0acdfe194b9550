"""Plain builders for inbound events and domain records (not fixtures).

Every builder takes keyword overrides for any field and fills the rest with
sensible defaults. Times are fixed and aware: `at(days=..., hours=...)` is an
offset from T0 (2026-11-02 00:00 UTC). Event ids are fresh uuid4s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from rehabgate.schemas.inbound import (
    CheckinLogged,
    ClientDischarged,
    ClientEnrolled,
    ClinicianAction,
    SessionLogged,
)
from rehabgate.services.gatekeeper.domain.history import (
    ApprovalRecord,
    CheckinRecord,
    ClientState,
    SessionRecord,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)
CLINIC = "clinic-01"
OTHER_CLINIC = "clinic-02"
CLIENT = "client-0001"
CLINICIAN = "physio-07"
ACHILLES = "achilles-tendinopathy@1"


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """A fixed aware instant: T0 plus the given offset."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes)


def _envelope(occurred_at: datetime) -> dict[str, Any]:
    return {
        "event_id": uuid4(),
        "occurred_at": occurred_at,
        "clinic_id": CLINIC,
        "client_id": CLIENT,
    }


# --- inbound events ----------------------------------------------------------


def an_enrolment(**overrides: Any) -> ClientEnrolled:
    fields = {
        **_envelope(at(hours=8)),
        "protocol": ACHILLES,
        "start_date": T0.date(),
    }
    return ClientEnrolled(**{**fields, **overrides})


def a_session(**overrides: Any) -> SessionLogged:
    fields = {
        **_envelope(at(hours=18)),
        "session_id": f"s-{uuid4().hex[:12]}",
        "pain_during": 3,
        "completed": True,
    }
    return SessionLogged(**{**fields, **overrides})


def a_checkin(**overrides: Any) -> CheckinLogged:
    fields = {
        **_envelope(at(days=1, hours=7)),
        "morning_pain": 2,
        "morning_stiffness": 2,
        "swelling": False,
    }
    return CheckinLogged(**{**fields, **overrides})


def a_clinician_action(**overrides: Any) -> ClinicianAction:
    fields = {
        **_envelope(at(hours=12)),
        "action": "approve",
        "reason": "reviewed in clinic",
        "clinician_id": CLINICIAN,
    }
    return ClinicianAction(**{**fields, **overrides})


def a_discharge(**overrides: Any) -> ClientDischarged:
    return ClientDischarged(**{**_envelope(at(hours=12)), **overrides})


# --- domain records (for evaluating criteria directly) ------------------------

STAGE = "stage-a"
OTHER_STAGE = "stage-b"


def a_session_record(**overrides: Any) -> SessionRecord:
    fields = {
        "session_id": f"s-{uuid4().hex[:12]}",
        "occurred_at": at(hours=18),
        "stage_id": STAGE,
        "pain_during": 3,
        "pain_after": None,
        "completed": True,
        "deload": False,
        "metrics": {},
    }
    return SessionRecord(**{**fields, **overrides})


def a_checkin_record(**overrides: Any) -> CheckinRecord:
    fields = {
        "occurred_at": at(days=1, hours=7),
        "morning_pain": 2,
        "morning_stiffness": 2,
        "swelling": False,
    }
    return CheckinRecord(**{**fields, **overrides})


def an_approval(**overrides: Any) -> ApprovalRecord:
    fields = {"stage_id": STAGE, "occurred_at": at(hours=12), "clinician_id": CLINICIAN}
    return ApprovalRecord(**{**fields, **overrides})


def a_state(**overrides: Any) -> ClientState:
    """A client at STAGE since T0, with no history unless given."""
    fields = {
        "client_id": CLIENT,
        "clinic_id": CLINIC,
        "protocol": ACHILLES,
        "stage_id": STAGE,
        "stage_entered_at": T0,
        "status": "active",
        "enrolment": an_enrolment(),
    }
    return ClientState(**{**fields, **overrides})


def sessions_on_days(pains: list[int], **overrides: Any) -> tuple[SessionRecord, ...]:
    """One session record per day at 18:00 (day 0, 1, ...), with the given pains."""
    return tuple(
        a_session_record(occurred_at=at(days=day, hours=18), pain_during=pain, **overrides)
        for day, pain in enumerate(pains)
    )
