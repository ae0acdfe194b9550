"""The scripted clinic of `rehabgate demo`: five clients on three protocols.

Achilles tendinopathy:
- steady: a clean course; stage 2 unlocks after two weeks.
- flare: unlocks stage 2, then two painful sessions in a row step back to stage 1.
- swelling: reports new swelling, is flagged to the physio, who approves resuming.
Return to running: runner walks 30 minutes, then starts and completes walk-run.
Six-week strength block: lifter progresses week by week by the 2-for-2 rule.

Pure data: ids and times are generated from a seed and a start date.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

PROTOCOL = "achilles-tendinopathy@2"
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

    def enrol(self, client: str, protocol: str = PROTOCOL) -> None:
        self.add(client, "client.enrolled", 0, 8, protocol=protocol, start_date=START.isoformat())

    def session(self, client: str, day: int, pain: int, **extra: Any) -> None:
        extra.setdefault("exercises", STAGE_1_SETS)
        self.add(
            client, "session.logged", day, 18,
            session_id=f"s{day}-{self._id()[:8]}", pain_during=pain, completed=True, **extra,
        )  # fmt: skip

    def checkin(self, client: str, day: int, pain: int, swelling: bool = False) -> None:
        self.add(
            client, "checkin.logged", day, 7,
            morning_pain=pain, morning_stiffness=pain, swelling=swelling,
        )  # fmt: skip

    def walk_or_run(self, client: str, day: int, **session: Any) -> None:
        """Return to running: pain-free, no limp, checked in the next morning."""
        self.session(client, day, pain=session.pop("pain", 1), observations={"limp": False},
                     **session)  # fmt: skip
        self.checkin(client, day + 1, pain=1)

    def lift(
        self, client: str, day: int, rpe: float, squat_kg: float, sets: int, reps: int
    ) -> None:
        """Squat and deadlift; the last set of each at `rpe`, earlier sets one lower, and
        two reps over the target on the last set (the 2-for-2 rule)."""
        exercises = [
            {"exercise_id": name, "sets": [{"reps": reps + 2 if n == sets - 1 else reps,
                                             "load_kg": load,
                                             "rpe": rpe if n == sets - 1 else rpe - 1}
                                            for n in range(sets)]}
            for name, load in (("back-squat", squat_kg), ("deadlift", squat_kg * 1.2))
        ]  # fmt: skip
        self.add(client, "session.logged", day, 18, session_id=f"s{day}-{self._id()[:8]}",
                 pain_during=1, completed=True, exercises=exercises)  # fmt: skip
        self.checkin(client, day + 1, pain=1)

    def good_day(self, client: str, day: int) -> None:
        metrics = {"single_leg_heel_raise_reps": 8 + day // 3} if day % 3 == 0 else {}
        self.session(client, day, pain=2 + day % 2, metrics=metrics)
        self.checkin(client, day + 1, pain=2)


def demo_events(
    run_id: str, seed: int = 7, channel: str = "stream", address: str | None = None
) -> list[dict[str, Any]]:
    """Every event of the demo, in publishing order (interleaved by day, like a clinic).
    With a `channel` other than the default stream, every client's contact names it
    (and `address`), so the demo's messages go out by e-mail or webhook."""
    script = _Script(run_id, random.Random(f"{seed}-{run_id}"))
    for client in ("steady", "flare", "swelling"):
        script.enrol(client)
    script.enrol("runner", "return-to-run-5k-10k@2")
    script.enrol("lifter", "strength-block-6wk@2")
    if channel == "stream":
        script.add("swelling", "client.contact.updated", 0, 9, channel="stream",
                   address="demo-inbox", locale="en")  # fmt: skip
    else:
        suffix = f"-{run_id}"
        for enrolled in [e for e in script.events if e["event_type"] == "client.enrolled"]:
            client = enrolled["client_id"].removesuffix(suffix)
            script.add(client, "client.contact.updated", 0, 9, channel=channel,
                       address=address or f"demo-{client}", locale="en")  # fmt: skip
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
        if day <= 2:
            walked = {"brisk_walk_minutes": 20 + 5 * day} | (
                {"arc_screen_tests_passed": 5} if day == 2 else {}
            )
            script.walk_or_run("runner", day, pain=0, metrics=walked)
        elif day in (4, 6, 8, 10, 12, 14):
            minutes = 12 + 2 * ((day - 4) // 4)
            script.walk_or_run(
                "runner", day, phase=f"walk-run-{(day - 4) // 4 + 1}",
                exercises=[{"exercise_id": "run", "sets": [{"reps": minutes}]}],
            )  # fmt: skip
        if day in LIFTS:
            script.lift("lifter", day, *LIFTS[day])
    return script.events


#: Achilles stage 1 as prescribed (its four daily exercises, every set): logged in
#: full, since @2 checks a session marked completed against its sets.
STAGE_1_SETS = [
    {"exercise_id": exercise, "sets": [{"reps": reps}] * 3}
    for exercise, reps in (("two-leg-heel-raise", 15), ("one-leg-heel-raise", 10),
                           ("seated-heel-raise", 10), ("eccentric-heel-raise", 10))
]  # fmt: skip

#: Strength block sessions: day -> (last-set RPE, squat kg, sets, reps).
LIFTS = {
    0: (7, 60, 3, 8), 3: (7, 62.5, 3, 8), 7: (7.5, 67.5, 3, 6), 10: (8, 70, 3, 6),
    14: (8, 72.5, 4, 5), 17: (8, 75, 4, 5),
}  # fmt: skip


def demo_lines(run_id: str, channel: str = "stream", address: str | None = None) -> list[str]:
    return [json.dumps(e) for e in demo_events(run_id, channel=channel, address=address)]
