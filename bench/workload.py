"""A realistic, seeded clinic workload for the benchmark: clients enrolled on the
shipped Achilles protocol, then daily sessions with plausible pain and load
trajectories and next-morning check-ins, interleaved across clients the way a
national network's clinics would publish them."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 2, 8, tzinfo=UTC)
PROTOCOL = "achilles-tendinopathy@1"


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
