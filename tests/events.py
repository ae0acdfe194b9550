"""Raw clinic events as JSON dicts, the way an integrator would write them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

#: Far enough in the past that a history of many weeks is not "in the future" for
#: intake's time window (REHABGATE_MAX_FUTURE_S) on the day the tests run.
T0 = datetime(2026, 6, 1, 8, tzinfo=UTC)


def unique_client(prefix: str = "cl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def event(event_type: str, client_id: str, hours: float = 0, **body: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
        "clinic_id": "clinic-a",
        "client_id": client_id,
        **body,
    }


def enrolment(client_id: str, protocol: str = "achilles-tendinopathy@1") -> dict[str, Any]:
    return event("client.enrolled", client_id, protocol=protocol, start_date=T0.date().isoformat())


def session(client_id: str, day: int, pain: int = 2, **body: Any) -> dict[str, Any]:
    return event(
        "session.logged", client_id, hours=24 * day + 10,
        session_id=f"s-{uuid.uuid4().hex[:8]}", pain_during=pain, completed=True, **body,
    )  # fmt: skip


def checkin(client_id: str, day: int, pain: int = 2, swelling: bool = False) -> dict[str, Any]:
    return event(
        "checkin.logged", client_id, hours=24 * day - 1,
        morning_pain=pain, morning_stiffness=pain, swelling=swelling,
    )  # fmt: skip
