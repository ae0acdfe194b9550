"""The whole path with real processes: the README's `redis-cli XADD` example in,
a decision and a client message out; bad input dead-lettered while the
gatekeeper goes on; and no health values or contact details in any log line."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rehabgate.schemas.streams import (
    INBOUND,
    INBOUND_DEAD_LETTER,
    client_messages_stream,
    evaluated_stream,
)
from rehabgate.services.cli.stack import Stack
from rehabgate.services.common.redis_server import server_binary
from tests.waiting import died, wait_for

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
CANARY_ADDRESS = "canary.person@example.org"


def readme_xadd_commands() -> list[list[str]]:
    """The `redis-cli ... XADD` lines of the README, split as a shell would."""
    import shlex

    lines = [ln for ln in README.read_text().splitlines() if ln.startswith("redis-cli ")]
    assert lines, "README lost its XADD example"
    return [shlex.split(ln) for ln in lines]


def cli_binary() -> str:
    found = shutil.which("redis-cli")
    return found or str(server_binary().with_name("valkey-cli"))


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    with Stack(redis_url, data_dir=None, log_dir=logs) as running:
        yield running


def entries_mentioning(r: redis.Redis, stream: str, needle: str) -> list[dict[bytes, bytes]]:
    return [f for _, f in r.xrange(stream) if any(needle.encode() in v for v in f.values())]


def test_readme_xadd_example_yields_a_decision_and_a_message(
    stack: Stack, sync_redis: redis.Redis, redis_url: str
) -> None:
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    for argv in readme_xadd_commands():
        argv = [a.replace("c-7f3a9", client_id) for a in argv]
        event = json.loads(argv[-1])
        event["event_id"] = str(uuid.uuid4())  # the example may have run before
        argv[-1] = json.dumps(event)
        argv = [cli_binary(), "-u", redis_url, *argv[3:]]
        subprocess.run(argv, check=True, capture_output=True)

    decisions = wait_for(
        lambda: (
            len(found := entries_mentioning(sync_redis, evaluated_stream(0), client_id)) >= 2
            and found
        ),
        what="the two decisions",
        abort=died(stack),
    )
    outcomes = [json.loads(d[b"event"])["outcome"] for d in decisions]
    assert outcomes == ["unlocked", "held"]
    messages = wait_for(
        lambda: entries_mentioning(sync_redis, client_messages_stream(0), client_id),
        what="the welcome message",
        abort=died(stack),
    )
    assert "Welcome" in json.loads(messages[0][b"message"])["title"]


def test_malformed_event_is_dead_lettered_and_the_next_one_processed(
    stack: Stack, sync_redis: redis.Redis
) -> None:
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    bad_id = sync_redis.xadd(INBOUND, {"event": '{"event_type": "session.logged", oops'})
    enrol = {
        "event_id": str(uuid.uuid4()), "event_type": "client.enrolled",
        "occurred_at": "2026-11-02T08:00:00+00:00", "clinic_id": "clinic-a",
        "client_id": client_id, "protocol": "achilles-tendinopathy@1", "start_date": "2026-11-02",
    }  # fmt: skip
    sync_redis.xadd(INBOUND, {"event": json.dumps(enrol)})

    letter = wait_for(lambda: [f for _, f in sync_redis.xrange(INBOUND_DEAD_LETTER)
                               if f[b"source_id"] == bad_id], what="the dead letter", abort=died(stack))  # fmt: skip
    assert letter[0][b"reason"].startswith(b"malformed JSON")
    wait_for(lambda: entries_mentioning(sync_redis, evaluated_stream(0), client_id),
             what="the next event's decision", abort=died(stack))  # fmt: skip
    assert not died(stack)()


def test_logs_carry_ids_but_no_health_values_or_contact_details(
    stack: Stack, sync_redis: redis.Redis
) -> None:
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    base = {"occurred_at": "2026-11-02T08:00:00+00:00", "clinic_id": "clinic-a",
            "client_id": client_id}  # fmt: skip
    events = [
        {**base, "event_id": str(uuid.uuid4()), "event_type": "client.contact.updated",
         "channel": "email", "address": CANARY_ADDRESS},
        {**base, "event_id": str(uuid.uuid4()), "event_type": "checkin.logged",
         "morning_pain": 97, "morning_stiffness": 1, "swelling": False},
        {**base, "event_id": str(uuid.uuid4()), "event_type": "client.contact.updated",
         "channel": "email", "address": CANARY_ADDRESS, "nickname": "Canary Person"},
    ]  # fmt: skip
    entry_ids = [sync_redis.xadd(INBOUND, {"event": json.dumps(e)}).decode() for e in events]
    wait_for(lambda: len([f for _, f in sync_redis.xrange(INBOUND_DEAD_LETTER)
                          if client_id.encode() in f[b"raw"]]) == 2,
             what="both dead letters", abort=died(stack))  # fmt: skip
    # The gatekeeper logs each entry's fate once it has handled it: every line about
    # these entries is written once the last of them is in the log.
    assert stack.log_dir is not None
    log_dir = stack.log_dir

    def logged() -> str | None:
        text = "\n".join(p.read_text() for p in log_dir.glob("*.log"))
        return text if all(f'"entry_id": "{i}"' in text for i in entry_ids) else None

    text = wait_for(logged, what="the gatekeeper's line for each entry", abort=died(stack))
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines, "services wrote no log lines"
    assert all("event" in line and "timestamp" in line for line in lines)
    assert CANARY_ADDRESS not in text
    assert "Canary Person" not in text
    values = [v for line in lines for v in _leaves(line)]
    assert 97 not in values
    assert "97" not in values
    health_keys = {"pain_during", "morning_pain", "morning_stiffness", "swelling", "address"}
    assert not health_keys & {k for line in lines for k in _keys(line)}


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


def test_an_entry_that_is_not_utf8_is_dead_lettered_not_left_pending(
    stack: Stack, sync_redis: redis.Redis
) -> None:
    """FastStream would fail to decode such a batch before our handler ran."""
    bad_id = sync_redis.xadd(INBOUND, {"event": b'{"event_type": "\xff\xfe"}', b"\xc3": b"\xff"})

    letter = wait_for(lambda: [f for _, f in sync_redis.xrange(INBOUND_DEAD_LETTER)
                               if f[b"source_id"] == bad_id], what="the dead letter", abort=died(stack))  # fmt: skip
    assert letter[0][b"reason"].startswith(b"malformed JSON")
    assert letter[0][b"raw"] == b'{"event_type": "\xff\xfe"}'
    wait_for(lambda: sync_redis.xpending_range(INBOUND, "gatekeeper", bad_id, bad_id, 1) == [],
             what="the entry acknowledged", abort=died(stack))  # fmt: skip
