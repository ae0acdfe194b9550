"""No health values or contact details in any log line (S18), the larger sibling of
test_end_to_end's log test: the gatekeeper and notifier processes, two clinics (one
requiring signatures), and a workload with canary names, e-mail addresses, phone
numbers and numbers in every free-text and numeric field, valid and refused alike."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from rehabgate.schemas.signing import generate_key, sign
from rehabgate.schemas.streams import (
    INBOUND,
    NOTIFIER_GROUP,
    clinic_inbound_stream,
    evaluated_stream,
)
from rehabgate.services.cli.stack import Stack
from tests.events import checkin, enrolment, event, session
from tests.integration.test_end_to_end import _keys, _leaves
from tests.waiting import died, handled, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = generate_key()
SIGNED, PLAIN = "clinic-logs-s", "clinic-logs-p"
NAME, EMAIL, PHONE = "Zelda Quimby", "zelda.quimby@example.org", "+44 7700 900123"
TEXT_CANARIES = (NAME, "Zelda", "Quimby", "zelda.quimby", "zeldaquimby", EMAIL, PHONE, "7700 900")
INT_CANARIES = (917, 97, 733)
FLOAT_CANARIES = ("4321.987", "987.654", "8642.135", "9.75")
HEALTH_KEYS = {
    "pain_during", "pain_after", "morning_pain", "morning_stiffness", "swelling", "address",
    "metrics", "exercises", "reps", "load_kg", "duration_s", "rpe", "observations",
    "quiet_hours", "body", "title", "summary", "criteria",
}  # fmt: skip


def workload(client: str, clinic: str) -> list[dict[str, Any]]:
    """Every event type, every free-text field a name or an address, numbers unusual."""
    note = f"{NAME} ({EMAIL}, {PHONE}) said the knee gave way"
    sets = [{"reps": 917, "load_kg": 987.654, "duration_s": 8642.135, "rpe": 9.75}]
    events = [
        enrolment(client),
        event("client.contact.updated", client, channel="email", address=EMAIL, locale="en",
              quiet_hours={"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}),
        session(client, 0, pain=3, pain_after=4, metrics={"zeldaquimby_score": 4321.987},
                exercises=[{"exercise_id": "zeldaquimby-squat", "sets": sets}],
                observations={"limp": True}, correlation_id=f"{NAME} <{EMAIL}>"),
        checkin(client, 1, pain=7, swelling=True),
        event("clinician.action", client, hours=40, action="approve", reason=note,
              clinician_id="dr-quimby"),
        session(client, 2, pain=1),
        event("client.discharged", client, hours=100, reason=note),
    ]  # fmt: skip
    return [{**e, "clinic_id": clinic} for e in events]


def refused_workload(client: str) -> list[tuple[str, dict[str, str]]]:
    """(stream, fields) of entries that must be refused, canaries in each."""
    bad_pain = {**session(client, 3, pain=2), "clinic_id": PLAIN, "pain_during": 97}
    unknown_field = {**checkin(client, 4), "clinic_id": PLAIN, "nickname": NAME}
    foreign = {**event("client.contact.updated", f"{client}-s", channel="email",
                       address=EMAIL), "clinic_id": PLAIN}  # fmt: skip
    mismatch = {**checkin(client, 5, pain=733 % 11), "clinic_id": SIGNED}
    unsigned = {**session(f"{client}-s", 6, pain=2), "clinic_id": SIGNED,
                "correlation_id": EMAIL}  # fmt: skip
    wrong_key = sign(json.dumps({**checkin(f"{client}-s", 7), "clinic_id": SIGNED,
                                 "correlation_id": NAME}), generate_key(), int(time.time()))  # fmt: skip
    plain, signed = clinic_inbound_stream(PLAIN), clinic_inbound_stream(SIGNED)
    return [
        (plain, {"event": json.dumps(bad_pain)}),
        (plain, {"event": json.dumps(unknown_field)}),
        (plain, {"event": json.dumps(foreign)}),
        (plain, {"event": json.dumps(mismatch)}),
        (plain, {"event": f'{{"note": "{NAME} {EMAIL}", oops'}),
        (signed, {"event": json.dumps(unsigned)}),
        (signed, wrong_key),
        (
            INBOUND,
            {
                "event": json.dumps(
                    {**enrolment(client), "clinic_id": PLAIN, "correlation_id": PHONE}
                )
            },
        ),
    ]


def test_no_canary_reaches_any_log_line(redis_url: str, tmp_path: Path) -> None:
    env = {
        "REHABGATE_CLINICS": json.dumps(
            {SIGNED: {"require_signature": True, "keys": [KEY]}, PLAIN: {}}
        ),
        "REHABGATE_HTTP_PORT": "0",
        "REHABGATE_COALESCE_WINDOW_S": "0",
        "REHABGATE_LOG_LEVEL": "DEBUG",
    }
    r = redis.Redis.from_url(redis_url)
    run = uuid.uuid4().hex[:8]
    logs = tmp_path / "logs"
    with Stack(redis_url, None, logs, {"gatekeeper": env, "notifier": env}) as stack:
        clients = [f"log-{run}-{n}" for n in range(3)]
        for client in clients:
            for e in workload(client, PLAIN):
                r.xadd(clinic_inbound_stream(PLAIN), {"event": json.dumps(e)})
            for e in workload(f"{client}-s", SIGNED):
                r.xadd(clinic_inbound_stream(SIGNED), sign(json.dumps(e), KEY, int(time.time())))
        wait_for(
            lambda: _count(logs, "event_applied", run) >= 3 * 2 * 7, what="every event applied"
        )
        # Once the clinics own their clients: the refused ones.
        for client in clients:
            for stream, fields in refused_workload(client):
                r.xadd(stream, fields)
        expected = 3 * len(refused_workload("x"))
        wait_for(lambda: _count(logs, "event_dead_lettered", "") >= expected,
                 what="every refusal dead-lettered", abort=died(stack))  # fmt: skip
        # Every decision is written by now (refusals make none): once the notifier has
        # acknowledged each of ours, its lines for them are in the log (it logs a
        # batch before acknowledging it).
        ours = [i for i, f in r.xrange(evaluated_stream(0)) if run.encode() in f[b"event"]]
        assert ours
        wait_for(lambda: handled(r, evaluated_stream(0), NOTIFIER_GROUP, ours),
                 what="the notifier to handle every decision", abort=died(stack))  # fmt: skip
        wait_for(lambda: _count(logs, "decisions_handled", "") >= 1, abort=died(stack))
        assert not died(stack)()
    r.close()

    text = "\n".join(p.read_text() for p in logs.glob("*.log"))
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all("event" in line and "timestamp" in line for line in lines)
    lowered = text.lower()
    for canary in TEXT_CANARIES:
        assert canary.lower() not in lowered, f"{canary!r} in the logs"
    for number in FLOAT_CANARIES:
        assert number not in text, f"{number} in the logs"
    leaves = [v for line in lines for v in _leaves(line)]
    for number in INT_CANARIES:
        assert number not in leaves
        assert str(number) not in leaves
    assert not HEALTH_KEYS & {k for line in lines for k in _keys(line)}
    # The lines still say what happened, with ids: each refusal has its reason's words.
    reasons = {line.get("reason") for line in lines if line["event"] == "event_dead_lettered"}
    assert {"schema violation", "client belongs to another clinic", "clinic mismatch",
            "signature missing", "signature invalid", "stream closed", "malformed"} <= reasons  # fmt: skip


def _count(logs: Path, event_name: str, needle: str) -> int:
    total = 0
    for path in logs.glob("*.log"):
        for line in path.read_text().splitlines():
            if f'"event": "{event_name}"' in line and needle in line:
                total += 1
    return total
