"""`rehabgate publish FILE.json`: an integrator's smoke test.

Publishes each event exactly as a clinic would (a plain XADD of the JSON in the
field `event`), then waits for its fate: the decision, or the dead letter with
its reason. A file may hold one JSON object, a JSON array, or JSON lines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import redis

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.streams import EVENT_FIELD, INBOUND, INBOUND_DEAD_LETTER, evaluated_stream

from .stream_reading import last_id, read_after


def read_events(path: Path) -> list[str]:
    """The raw JSON text of each event in the file (kept verbatim, even if invalid)."""
    text = path.read_text(encoding="utf-8").strip()
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError:
        return [line for line in text.splitlines() if line.strip()]
    if isinstance(document, list):
        return [json.dumps(item) for item in document]
    return [text]


def publish(url: str, path: Path, partitions: int, wait_s: float = 10.0) -> int:
    client = redis.Redis.from_url(url)
    starts = {s: last_id(client, s) for s in [INBOUND_DEAD_LETTER]
              + [evaluated_stream(p) for p in range(partitions)]}  # fmt: skip
    sent: dict[str, str] = {}
    for raw in read_events(path):
        entry_id = cast(bytes, client.xadd(INBOUND, {EVENT_FIELD: raw})).decode()
        sent[entry_id] = _event_id(raw)
        print(f"published {entry_id} (event_id {sent[entry_id] or '?'})")
    failures = 0
    deadline = time.monotonic() + wait_s
    while sent and time.monotonic() < deadline:
        for stream, cursor in starts.items():
            for entry_id, fields in read_after(client, stream, cursor):
                starts[stream] = entry_id
                if stream == INBOUND_DEAD_LETTER:
                    source = fields[b"source_id"].decode()
                    if source in sent:
                        print(f"DEAD-LETTERED {source}: {fields[b'reason'].decode()}")
                        sent.pop(source)
                        failures += 1
                    continue
                decision = ProgressionEvaluated.model_validate_json(fields[b"event"])
                for source, event_id in list(sent.items()):
                    if event_id == str(decision.cause_event_id):
                        print(f"decided {source}: {decision.outcome} "
                              f"(stage {decision.to_stage}) - {decision.summary}")  # fmt: skip
                        sent.pop(source)
        time.sleep(0.1)
    for source in sent:
        print(f"no decision for {source} within {wait_s:g}s (applied without a decision, "
              "a duplicate, or the gatekeeper is not running)")  # fmt: skip
    return 1 if failures else 0


def _event_id(raw: str) -> str:
    try:
        return str(json.loads(raw).get("event_id", ""))
    except (json.JSONDecodeError, AttributeError):
        return ""
