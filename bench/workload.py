"""A realistic, seeded clinic workload for the benchmark: clients enrolled on the
shipped Achilles protocol, then daily sessions with plausible pain and load
trajectories and next-morning check-ins, interleaved across clients the way a
national network's clinics would publish them."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

START = datetime(2026, 11, 2, 8, tzinfo=UTC)
PROTOCOL = "achilles-tendinopathy@1"
BENCH_CLINIC = "clinic-bench"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def events(clients: int, days: int, seed: int = 1) -> Iterator[str]:
    """Enrolments first, then day by day each client's session and check-in (JSON)."""
    rng = random.Random(seed)
    ids = [f"bench-{seed}-{n}" for n in range(clients)]
    base = {"clinic_id": "clinic-bench"}
    for client in ids:
        yield json.dumps({**base, "event_id": _uuid(rng), "event_type": "client.enrolled",
                          "occurred_at": START.isoformat(), "client_id": client,
                          "protocol": PROTOCOL, "start_date": START.date().isoformat()})  # fmt: skip
    for day in range(days):
        for n, client in enumerate(ids):
            flare = rng.random() < 0.03
            pain = rng.choice([6, 7]) if flare else rng.choice([1, 2, 2, 3, 3, 4])
            load = 10 + day * 0.5 + n % 7
            at = START + timedelta(days=day, hours=10)
            yield json.dumps({**base, "event_id": _uuid(rng), "event_type": "session.logged",
                              "occurred_at": at.isoformat(), "client_id": client,
                              "session_id": f"s{day}", "pain_during": pain,
                              "completed": rng.random() > 0.1,
                              "exercises": [{"exercise_id": "one-leg-heel-raise",
                                             "sets": [{"reps": 12, "load_kg": load, "rpe": 7}] * 3}],
                              "metrics": {"single_leg_heel_raise_reps": 8 + day // 2}})  # fmt: skip
            yield json.dumps({**base, "event_id": _uuid(rng), "event_type": "checkin.logged",
                              "occurred_at": (at + timedelta(hours=21)).isoformat(),
                              "client_id": client, "morning_pain": max(0, pain - 1),
                              "morning_stiffness": 2, "swelling": rng.random() < 0.01})  # fmt: skip


# -- the realistic workload (issue 19) ------------------------------------------------

#: The protocol of the realistic workload, and how far into it clients are.
REALISTIC_PROTOCOL = "achilles-tendinopathy@2"
MAX_DAY = 84
#: Shares of the realistic mix (per client and day, or per event for LATE).
MISSED = 0.04  # no session that day (and so no check-in the next morning)
FLARE = 0.03  # pain during 6 or 7 (7 trips the safety flag), a sore next morning
SWELLING = 0.01  # swelling reported at the check-in (trips the safety flag)
APPROVE = 0.03  # a clinician's approval on an ordinary day
LATE = 0.02  # delivered 1 to 7 days after it happened
LATE_DAYS = 7


def prescribed_union(protocol: str = REALISTIC_PROTOCOL) -> list[dict[str, object]]:
    """Every exercise any stage of `protocol` prescribes, each with the most sets and
    reps any stage asks for: logged in full, a session counts as completed against
    the prescription of whichever stage the client is at (read from the shipped
    YAML, not the domain's classes)."""
    import yaml

    from rehabgate.services.gatekeeper import protocol_files

    name, _, number = protocol.partition("@")
    folder = Path(protocol_files.__file__).parent / "protocols"
    document = yaml.safe_load((folder / f"{name}@{number}.yaml").read_text())
    most: dict[str, tuple[int, int]] = {}
    for stage in document["stages"]:
        for exercise in stage["prescription"]["exercises"]:
            sets, reps = most.get(exercise["id"], (0, 0))
            most[exercise["id"]] = (max(sets, exercise["sets"]), max(reps, exercise["reps"]))
    return [
        {"exercise_id": exercise, "sets": [{"reps": reps}] * sets}
        for exercise, (sets, reps) in most.items()
    ]


@dataclass
class _Client:
    client_id: str
    rng: random.Random
    start: date  # protocol day 1
    base_reps: int  # single-leg heel raises in a row on day 1
    session_yesterday: tuple[int, int] | None = None  # (pain during, morning pain due)
    approve_on: int | None = None  # protocol day of a follow-up approval


class Realistic:
    """Seeded realistic histories: `clients` clients on the Achilles protocol (@2),
    each enrolled so that `today` is day k of their protocol, k spread evenly over
    1..84 (or `at_day` for all of them). Per day and client: a check-in at about
    07:00 on the previous day's session (when there was one), a session at about
    10:00 (pain during mostly 1-4, a flare now and then; every prescribed exercise
    logged as prescribed; single-leg heel raises rising), and now and then a
    clinician's approval (on a few percent of days, and a day or two after a
    safety flag). A share `late` of the events is delivered 1 to 7 days after it
    happened, i.e. later in the stream than events that happened after it; unless
    `late_in_preload`, only those delivered after today are (the preload is
    delivered in order: it is not timed, a late arrival costs a replay of the
    client's history, and the state it leaves is the same), so the following days
    carry the realistic share of late arrivals from the week before.

    The stream: `preload()` is every enrolment (earliest start first), then every
    event delivered up to and including today, day by day in order of delivery
    (clients interleaved); `next_day()` is every event delivered on the following
    calendar day, i.e. each client's day k+1 (then k+2, ...), up to `extra_days`
    days. Events are JSON strings, generated lazily; the last generated day lies at
    least a day before the wall clock, so no event is in the future."""

    def __init__(
        self,
        clients: int,
        seed: int = 1,
        at_day: int | None = None,
        extra_days: int = 1,
        late: float = LATE,
        late_in_preload: bool = False,
        now: datetime | None = None,
    ) -> None:
        self.extra_days = extra_days
        self.late = late
        self.late_in_preload = late_in_preload
        now = now or datetime.now(UTC)
        #: Day k of every client's protocol; its next days follow, the last one ending
        #: two days before `now`.
        self.today = (now - timedelta(days=extra_days + 2)).date()
        self.days: dict[str, int] = {}
        self._clients: list[_Client] = []
        for n in range(clients):
            k = at_day if at_day is not None else 1 + n * MAX_DAY // max(clients, 1)
            client_id = f"real-{seed}-{n}"
            self.days[client_id] = k
            self._clients.append(
                _Client(
                    client_id,
                    random.Random(f"{seed}-{n}"),
                    self.today - timedelta(days=k - 1),
                    base_reps=random.Random(f"reps-{seed}-{n}").randint(4, 8),
                )
            )
        self._clients.sort(key=lambda c: c.start)
        self._ids = random.Random(f"ids-{seed}")
        self._stream = self._delivered()
        self._pending: tuple[date, str] | None = None

    def enrolments(self) -> Iterator[str]:
        for c in self._clients:
            yield json.dumps({"clinic_id": BENCH_CLINIC, "event_id": self._uuid(),
                              "event_type": "client.enrolled",
                              "occurred_at": _at(c.start, 8 * 60), "client_id": c.client_id,
                              "protocol": REALISTIC_PROTOCOL,
                              "start_date": c.start.isoformat()})  # fmt: skip

    def preload(self) -> Iterator[str]:
        """Enrolments, then every event delivered up to and including `today`."""
        yield from self.enrolments()
        yield from self._until(self.today)

    def next_day(self) -> list[str]:
        """Every event delivered on the day after the last one taken."""
        if self._pending is None:
            self._pending = next(self._stream, None)
        if self._pending is None:
            raise ValueError("no more generated days: raise extra_days")
        return list(self._until(self._pending[0]))

    def take(self, events: int) -> tuple[list[str], int]:
        """At least `events` events, whole days of them: (events, days)."""
        taken: list[str] = []
        days = 0
        while len(taken) < events:
            taken += self.next_day()
            days += 1
        return taken, days

    def _until(self, last: date) -> Iterator[str]:
        while True:
            if self._pending is None:
                self._pending = next(self._stream, None)
            if self._pending is None or self._pending[0] > last:
                return
            yield self._pending[1]
            self._pending = None

    def _uuid(self) -> str:
        return _uuid(self._ids)

    def _delivered(self) -> Iterator[tuple[date, str]]:
        """(delivery date, event), in order of delivery."""
        first = self._clients[0].start if self._clients else self.today
        last = self.today + timedelta(days=self.extra_days)
        deliveries: dict[date, list[tuple[datetime, str]]] = defaultdict(list)
        day = first
        while day <= last:
            for c in self._clients:
                if c.start <= day:
                    for at, payload in self._day(c, (day - c.start).days + 1, day):
                        rng = c.rng
                        late = rng.random() < self.late
                        then = day + timedelta(days=rng.randint(1, LATE_DAYS))
                        sent = _midnight(then) + timedelta(minutes=rng.randint(6 * 60, 22 * 60))
                        if late and (self.late_in_preload or then > self.today):
                            deliveries[then].append((sent, payload))
                        else:
                            deliveries[day].append((at + timedelta(minutes=rng.randint(0, 30)),
                                                    payload))  # fmt: skip
            for _, payload in sorted(deliveries.pop(day, [])):
                yield day, payload
            day += timedelta(days=1)

    def _day(self, c: _Client, d: int, day: date) -> list[tuple[datetime, str]]:
        """Client `c`'s events of protocol day `d` (calendar `day`), each with its time."""
        rng, out = c.rng, []
        base = {"clinic_id": BENCH_CLINIC, "client_id": c.client_id}
        if c.session_yesterday is not None:
            during, morning = c.session_yesterday
            swelling = rng.random() < SWELLING
            at = _midnight(day) + timedelta(minutes=7 * 60 + rng.randint(-30, 50))
            out.append((at, json.dumps({**base, "event_id": self._uuid(),
                                        "event_type": "checkin.logged",
                                        "occurred_at": at.isoformat(), "morning_pain": morning,
                                        "morning_stiffness": min(10, morning + rng.randint(0, 1)),
                                        "swelling": swelling})))  # fmt: skip
            if swelling or during >= 7:
                c.approve_on = d + rng.randint(0, 1)
        c.session_yesterday = None
        if rng.random() >= MISSED:
            flare = rng.random() < FLARE
            during = rng.choice([6, 7]) if flare else rng.choice([1, 2, 2, 3, 3, 4])
            morning = rng.randint(3, 5) if flare else rng.choice([0, 1, 1, 1, 2])
            at = _midnight(day) + timedelta(minutes=10 * 60 + rng.randint(-60, 120))
            reps = min(30, c.base_reps + d // 4 + rng.randint(-1, 1))
            out.append((at, json.dumps({**base, "event_id": self._uuid(),
                                        "event_type": "session.logged",
                                        "occurred_at": at.isoformat(),
                                        "session_id": f"s{d}-{c.client_id}", "pain_during": during,
                                        "completed": True, "exercises": _union(),
                                        "metrics": {"single_leg_heel_raise_reps": reps}})))  # fmt: skip
            c.session_yesterday = (during, morning)
        if c.approve_on == d or rng.random() < APPROVE:
            c.approve_on = None
            at = _midnight(day) + timedelta(minutes=rng.randint(12 * 60, 17 * 60))
            out.append((at, json.dumps({**base, "event_id": self._uuid(),
                                        "event_type": "clinician.action", "action": "approve",
                                        "occurred_at": at.isoformat(),
                                        "reason": "Reviewed at the weekly check: fine to go on",
                                        "clinician_id": "physio-bench"})))  # fmt: skip
        return out


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def _at(day: date, minutes: int) -> str:
    return (_midnight(day) + timedelta(minutes=minutes)).isoformat()


@cache
def _union() -> list[dict[str, object]]:
    return prescribed_union()


def validate(payloads: Iterable[str]) -> Counter[str]:
    """Every payload parsed as the gatekeeper's intake does (strict JSON types): the
    count of each event type; raises pydantic.ValidationError on the first that fails."""
    from rehabgate.schemas.inbound import INBOUND_ADAPTER

    kinds: Counter[str] = Counter()
    for payload in payloads:
        kinds[INBOUND_ADAPTER.validate_json(payload, strict=True).event_type] += 1
    return kinds


if __name__ == "__main__":  # python -m bench.workload [clients]: the mix, validated
    import sys

    workload = Realistic(int(sys.argv[1]) if len(sys.argv) > 1 else 500, extra_days=2)
    preload = validate(workload.preload())
    following = validate(workload.next_day())
    print(f"preload: {sum(preload.values())} events {dict(preload)}; today {workload.today}")
    print(f"next day: {sum(following.values())} events {dict(following)}")
