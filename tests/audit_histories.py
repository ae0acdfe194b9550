"""Realistic client histories for the audit-trail tests, applied through the real
use case (`process_batch` + `RedisClientStore`) on a real Redis.

`rich_history` covers every kind of audit entry a physio reads: enrolment, daily
sessions with load and next-morning check-ins, a safety flag and a clinician
approval, a rules unlock, a pain flare that steps back, a clinician override and
hold, a corrected (re-sent) session, and a late check-in.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.audit.reading import ClientAudit, read_client
from rehabgate.services.gatekeeper.process import Entry, Report, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import RedisClientStore
from tests.events import T0

PROTOCOLS = load_protocols()
_ids = itertools.count(1)


def _event(client: str, clinic: str, event_type: str, hours: float, **body: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
        "clinic_id": clinic,
        "client_id": client,
        **body,
    }


def rich_history(client: str, clinic: str = "clinic-a", days: int = 22) -> list[dict[str, Any]]:
    def session(day: int, pain: int, session_id: str | None = None) -> dict[str, Any]:
        reps = 10 + day // 3
        load = float(day // 4 * 2) or None
        metrics = {"single_leg_heel_raise_reps": 8 + day // 3} if day % 3 == 0 else {}
        return _event(
            client, clinic, "session.logged", 24 * day + 10,
            session_id=session_id or f"s{day}", pain_during=pain, completed=True,
            exercises=[{"exercise_id": "one-leg-heel-raise",
                        "sets": [{"reps": reps, "load_kg": load, "rpe": 6}] * 3}],
            metrics=metrics,
        )  # fmt: skip

    def checkin(day: int, pain: int, swelling: bool = False) -> dict[str, Any]:
        return _event(
            client, clinic, "checkin.logged", 24 * day - 1,
            morning_pain=pain, morning_stiffness=pain, swelling=swelling,
        )  # fmt: skip

    def clinician(hours: float, action: str, reason: str) -> dict[str, Any]:
        return _event(
            client, clinic, "clinician.action", hours,
            action=action, reason=reason, clinician_id="physio-7",
        )  # fmt: skip

    events = [_event(client, clinic, "client.enrolled", 0, protocol="achilles-tendinopathy@1",
                     start_date=T0.date().isoformat())]  # fmt: skip
    late = None
    for day in range(days):  # hours from T0 (08:00): +10 is 18:00, -1 is 07:00
        if day == 6:  # the morning after day 5 brought swelling: no session today
            continue
        if day == 7:
            events.append(clinician(24 * day + 4, "approve", "Swelling reviewed: minor, resume"))
        events.append(session(day, {16: 6, 17: 6}.get(day, 2 + day % 2)))
        if day == 18:
            events.append(
                clinician(24 * day + 12, "advance_override", "Flare settled, seen today")
            )
        if day == 19:
            events.append(session(day, 4, session_id=f"s{day}"))  # a corrected re-send
        if day == 5:
            events.append(checkin(day + 1, 3, swelling=True))
        elif day == 10:
            late = checkin(day + 1, 2)  # arrives at the very end
        else:
            events.append(checkin(day + 1, 2))
    events.append(clinician(24 * days + 4, "hold", "Travelling for two weeks: pause progression"))
    if late is not None:
        events.append(late)
    return events


def entries(events: list[dict[str, Any]]) -> list[Entry]:
    return [Entry(f"{next(_ids)}-0", {b"event": json.dumps(e).encode()}) for e in events]


async def apply(redis: Redis, events: list[dict[str, Any]], batch: int = 7) -> list[Report]:
    """Apply the events in batches, as the service would read them."""
    store = RedisClientStore(redis, partitions=1)
    return [
        await process_batch(entries(events[i : i + batch]), store, PROTOCOLS)
        for i in range(0, len(events), batch)
    ]


async def _stored(url: str, client: str, events: list[dict[str, Any]]) -> ClientAudit:
    r = Redis.from_url(url)
    try:
        reports = await apply(r, events)
        refused = [d.reason for rep in reports for d in rep.dead_letters]
        assert not refused, refused
        return await read_client(r, ClientKeys.of(client, 1))
    finally:
        await r.aclose()


def stored_history(
    url: str,
    client: str | None = None,
    clinic: str = "clinic-a",
    events: list[dict[str, Any]] | None = None,
) -> ClientAudit:
    """Apply a history (the rich one unless `events` is given) and read it back."""
    client = client or f"audit-{uuid.uuid4().hex[:8]}"
    return asyncio.run(_stored(url, client, events or rich_history(client, clinic)))


def clinician_only(client: str, clinic: str, reason: str) -> list[dict[str, Any]]:
    """Enrolment and one clinician hold with the given reason."""
    return [
        _event(client, clinic, "client.enrolled", 0, protocol="achilles-tendinopathy@1",
               start_date=T0.date().isoformat()),
        _event(client, clinic, "clinician.action", 2, action="hold", reason=reason,
               clinician_id="physio-9"),
    ]  # fmt: skip
