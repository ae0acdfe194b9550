"""A late sync, end to end with real processes (issue 14): a painful session from
before an unlock arrives after it. The client gets one message that says what
changed, the physio gets the flag and the withdrawn unlock, and the audit trail
names the decision the correction supersedes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis

from rehabgate.schemas.outbound import PhysioAlert, ProgressionEvaluated
from rehabgate.schemas.streams import (
    INBOUND,
    client_messages_stream,
    evaluated_stream,
    physio_alerts_stream,
)
from rehabgate.services.cli.stack import Stack
from tests.events import checkin, enrolment, session, unique_client
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(redis_url, data_dir=None, log_dir=tmp_path_factory.mktemp("logs")) as running:
        yield running


def publish(r: redis.Redis, *events: dict[str, Any]) -> None:
    for event in events:
        r.xadd(INBOUND, {"event": json.dumps(event)})


def decisions(r: redis.Redis, client: str) -> list[ProgressionEvaluated]:
    found = [ProgressionEvaluated.model_validate_json(f[b"event"])
             for _, f in r.xrange(evaluated_stream(0)) if client.encode() in f[b"event"]]  # fmt: skip
    return [d for d in found if d.client_id == client]


def messages(r: redis.Redis, client: str) -> list[dict[str, Any]]:
    found = [json.loads(f[b"message"]) for _, f in r.xrange(client_messages_stream(0))]
    return [m for m in found if m["client_id"] == client]


def alerts(r: redis.Redis, client: str) -> list[PhysioAlert]:
    found = [
        PhysioAlert.model_validate_json(f[b"event"]) for _, f in r.xrange(physio_alerts_stream(0))
    ]
    return [a for a in found if a.client_id == client]


def test_a_late_flare_before_an_unlock_is_one_catch_up_message_and_two_alerts(
    stack: Stack, sync_redis: redis.Redis
) -> None:
    client = unique_client()
    history = [enrolment(client)]
    for day in range(16):
        history += [session(client, day, pain=2, metrics={"single_leg_heel_raise_reps": 25}),
                    checkin(client, day + 1, pain=1)]  # fmt: skip
    publish(sync_redis, *history)
    unlock = wait_for(
        lambda: next((d for d in decisions(sync_redis, client)
                      if d.outcome == "unlocked" and d.from_stage), None),
        what="the stage-2 unlock",
    )  # fmt: skip
    told = wait_for(lambda: len(messages(sync_redis, client)) >= 2 and messages(sync_redis, client),
                    what="the welcome and the unlock messages")  # fmt: skip
    before = len(told)

    flare = session(client, 0, pain=8)
    flare["occurred_at"] = (unlock.occurred_at - timedelta(hours=10)).isoformat()
    publish(sync_redis, flare)

    correction = wait_for(
        lambda: next((d for d in decisions(sync_redis, client) if d.supersedes == unlock.decision_id), None),
        what="the correction of the unlock",
    )  # fmt: skip
    assert correction.superseded_outcome == "unlocked"
    assert correction.to_stage == unlock.from_stage
    assert str(correction.corrected_after) == flare["event_id"]
    new = wait_for(lambda: messages(sync_redis, client)[before:] or None,
                   what="the catch-up message")  # fmt: skip
    physio = wait_for(lambda: len(found := alerts(sync_redis, client)) >= 2 and found,
                      what="the flag's and the correction's physio alerts")  # fmt: skip

    taken_back = [
        d for d in decisions(sync_redis, client)
        if d.notice == "taken_back" and str(d.corrected_after) == flare["event_id"]
    ]  # fmt: skip
    assert len(taken_back) == 1
    assert len(new) == 1, [m["title"] for m in new]
    [catch_up] = new
    assert str(taken_back[0].decision_id) in catch_up["decision_ids"]
    assert "An update to your last progress message" in catch_up["body"]
    assert "You've unlocked" not in catch_up["body"]
    assert {str(a.decision_id) for a in physio} >= {str(taken_back[0].decision_id)}
    assert all(isinstance(a.occurred_at, datetime) for a in physio)
