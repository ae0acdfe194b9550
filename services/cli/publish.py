"""`rehabgate publish FILE.json`: an integrator's smoke test.

Publishes each event exactly as a clinic would (a plain XADD of the JSON in the
field `event`, through the publisher SDK in `rehabgate.schemas.publisher`), then
waits for its fate: the decision, or the dead letter with its reason. A file may
hold one JSON object, a JSON array, or JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rehabgate.schemas.publisher import DeadLetterInfo, Publisher


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
    """Publish with the SDK's raw path (invalid events too: the point is to see their
    dead letters) and print each fate as it arrives."""
    with Publisher(url, partitions=partitions) as publisher:
        sent: list[str] = []
        for raw in read_events(path):
            sent.append(publisher.publish_raw(raw))
            print(f"published {sent[-1]} (event_id {_event_id(raw) or '?'})")
        failures = 0
        waiting = set(sent)
        for source, fate in publisher.fates(sent, wait_s):
            waiting.discard(source)
            if isinstance(fate, DeadLetterInfo):
                print(f"DEAD-LETTERED {source}: {fate.reason}")
                failures += 1
            else:
                print(f"decided {source}: {fate.outcome} "
                      f"(stage {fate.to_stage}) - {fate.summary}")  # fmt: skip
    for source in (s for s in sent if s in waiting):
        print(f"no decision for {source} within {wait_s:g}s (applied without a decision, "
              "a duplicate, or the gatekeeper is not running)")  # fmt: skip
    return 1 if failures else 0


def _event_id(raw: str) -> str:
    try:
        return str(json.loads(raw).get("event_id", ""))
    except (json.JSONDecodeError, AttributeError):
        return ""
