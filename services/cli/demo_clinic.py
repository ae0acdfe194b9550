"""The scripted clinic of `rehabgate demo`: three clients on the Achilles protocol.

- steady: a clean course; stage 2 unlocks after two weeks.
- flare: unlocks stage 2, then two painful sessions in a row step back to stage 1.
- swelling: reports new swelling, is flagged to the physio, who approves resuming.

Pure data: ids and times are generated from a seed and a start date.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

PROTOCOL = "achilles-tendinopathy@1"
CLINIC = "demo-clinic"
START = date(2026, 11, 2)


def _at(day: int, hour: int) -> str:
    return (
        datetime.combine(START, datetime.min.time(), UTC) + timedelta(days=day, hours=hour)
    ).isoformat()


class _Script:
    def __init__(self, run_id: str, rng: random.Random) -> None:
        self.run_id = run_id
        self.rng = rng
        self.events: list[dict[str, Any]] = []

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, client: str, event_type: str, day: int, hour: int, **body: Any) -> None:
        self.events.append(
            {
                "event_id": self._id(),
                "event_type": event_type,
                "occurred_at": _at(day, hour),
                "clinic_id": CLINIC,
                "client_id": f"{client}-{self.run_id}",
                **body,
            }
        )

    def enrol(self, client: str) -> None:
        self.add(client, "client.enrolled", 0, 8, protocol=PROTOCOL, start_date=START.isoformat())

    def session(self, client: str, day: int, pain: int, **extra: Any) -> None:
        self.add(
            client,
            "session.logged",
            day,
            18,
            session_id=f"s{day}-{self._id()[:8]}",
            pain_during=pain,
            completed=True,
            exercises=[{"exercise_id": "one-leg-heel-raise", "sets": [{"reps": 10}] * 3}],
            **extra,
        )

    def checkin(self, client: str, day: int, pain: int, swelling: bool = False) -> None:
        self.add(
            client, "checkin.logged", day, 7,
            morning_pain=pain, morning_stiffness=pain, swelling=swelling,
        )  # fmt: skip

    def good_day(self, client: str, day: int) -> None:
        metrics = {"single_leg_heel_raise_reps": 8 + day // 3} if day % 3 == 0 else {}
        self.session(client, day, pain=2 + day % 2, metrics=metrics)
        self.checkin(client, day + 1, pain=2)


def demo_events(run_id: str, seed: int = 7) -> list[dict[str, Any]]:
    """Every event of the demo, in publishing order (interleaved by day, like a clinic)."""
    script = _Script(run_id, random.Random(f"{seed}-{run_id}"))
    for client in ("steady", "flare", "swelling"):
        script.enrol(client)
    script.add("swelling", "client.contact.updated", 0, 9, channel="stream",
               address="demo-inbox", locale="en")  # fmt: skip
    for day in range(0, 21):
        script.good_day("steady", day)
        if day < 16:
            script.good_day("flare", day)
        elif day in (17, 18):
            script.session("flare", day, pain=6)
            script.checkin("flare", day + 1, pain=2)
        else:
            script.good_day("flare", day)
        if day == 5:
            script.session("swelling", day, pain=4)
            script.checkin("swelling", day + 1, pain=3, swelling=True)
        elif day == 7:
            script.add("swelling", "clinician.action", day, 12, action="approve",
                       reason="Swelling reviewed in clinic: minor, resume loading",
                       clinician_id="physio-7")  # fmt: skip
        elif day != 6:
            script.good_day("swelling", day)
    return script.events


def demo_lines(run_id: str) -> list[str]:
    return [json.dumps(e) for e in demo_events(run_id)]
