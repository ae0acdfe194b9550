"""`rehabgate publish FILE.json`: an integrator's smoke test.

Reads the file (one JSON object, a JSON array, or JSON lines) and checks every
event locally with the same pydantic models the gatekeeper uses
(`rehabgate.schemas.inbound`) before anything is sent: a malformed file or an
invalid event is one line naming it, and nothing is published (`--no-check` sends
them anyway, to see their dead letters). Then it publishes each event exactly as a
clinic would (a plain XADD of the JSON in the field `event`, through the publisher
SDK) and reports each one's fate as it is settled:

- `decided`: the decision (outcome, stage, summary);
- `DEAD-LETTERED`: the gatekeeper's reason;
- `duplicate`: the event id was applied already (before, or earlier in this file),
  so nothing changed;
- `applied`: applied without a decision (contact updates, discharges);
- `deferred`: waiting for the client's enrolment (retried until it arrives,
  dead-lettered after the last allowed delivery);
- `pending` / `unread`: not settled within `--wait` seconds (is the gatekeeper
  running?).

Exit 0 when every event was decided, applied or a duplicate; 1 otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rehabgate.schemas.inbound import parse_inbound
from rehabgate.schemas.publisher import DeadLetterInfo, Fate, Progress, Publisher
from rehabgate.services.common.settings import Settings

from . import errors
from .errors import CliError

COMMAND = "rehabgate publish"
#: Event types that never have a decision.
NO_DECISION = frozenset({"client.contact.updated", "client.discharged"})


@dataclass
class Item:
    """One event of the file: where it was, its raw JSON, and what the check found."""

    where: str  # "line 3" / "item 2"
    raw: str
    event_id: str = ""
    client_id: str = ""
    event_type: str = ""
    problem: str | None = None


def read_events(path: Path) -> list[Item]:
    """Every event in the file, each checked with the gatekeeper's models."""
    text = errors.read_text(path, COMMAND, "event file").strip()
    if not text:
        raise CliError(f"{COMMAND}: {path} holds no events", errors.BAD_FILE)
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError:
        items = [
            Item(f"line {n}", line)
            for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()
        ]
    else:
        if isinstance(document, list):
            items = [Item(f"item {n}", json.dumps(d)) for n, d in enumerate(document, start=1)]
        else:
            items = [Item("the object", text)]
    for item in items:
        _check(item)
    return items


def _check(item: Item) -> None:
    try:
        document = json.loads(item.raw)
    except json.JSONDecodeError as exc:
        item.problem = f"not JSON ({exc.msg} at column {exc.colno})"
        return
    if isinstance(document, dict):
        item.event_id = str(document.get("event_id", ""))
        item.client_id = str(document.get("client_id", ""))
        item.event_type = str(document.get("event_type", ""))
    try:
        parse_inbound(item.raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)
        item.problem = "; ".join(
            f"{_where(e['loc'], item.event_type)}: {e['msg']}" for e in first[:3]
        )


def _where(loc: tuple[int | str, ...], event_type: str) -> str:
    """A field's path, without the event type pydantic puts first."""
    parts = [str(p) for p in loc]
    if parts and parts[0] == event_type:
        parts = parts[1:]
    return ".".join(parts) or "(event)"


def publish(url: str, path: Path, settings: Settings, wait_s: float, check: bool = True) -> int:
    items = read_events(path)
    bad = [item for item in items if item.problem]
    if bad and check:
        first = bad[0]
        raise CliError(
            f"{COMMAND}: {path}: {len(bad)} of {len(items)} events invalid, nothing sent; "
            f"{first.where}: {first.problem}",
            errors.BAD_FILE,
        )
    with Publisher(url, partitions=settings.partitions, cluster=settings.redis_cluster) as pub:
        valid = [(i.client_id, i.event_id) for i in items if not i.problem]
        applied_before = pub.applied(valid)
        sent: list[tuple[str, Item]] = []
        first_of: dict[str, str] = {}  # event id -> its first entry in this file
        repeat_of: dict[str, str] = {}  # entry -> the earlier entry with its event id
        for item in items:
            entry = pub.publish_raw(item.raw)
            sent.append((entry, item))
            if item.event_id and item.event_id in first_of:
                repeat_of[entry] = first_of[item.event_id]
            first_of.setdefault(item.event_id, entry)
            print(f"published {entry} (event_id {item.event_id or '?'})", flush=True)
        settled = Settlement(pub, dict(sent), applied_before, repeat_of)
        left = settled.run(wait_s)
    for entry, progress in left.items():
        print(settled.unsettled_line(entry, progress, wait_s))
    return 1 if settled.failures or left else 0


class Settlement:
    """Follows the published entries until each has a fate or time is up."""

    def __init__(
        self,
        publisher: Publisher,
        items: dict[str, Item],
        applied_before: set[str],
        repeat_of: dict[str, str],
    ) -> None:
        self.publisher = publisher
        self.items = items
        self.repeat_of = repeat_of
        #: Event ids applied before this run: recognised as duplicates, never decided.
        self.known = {e for e, i in items.items() if i.event_id and i.event_id in applied_before}
        self.waiting = [e for e in items if e not in self.known]
        self.fates: dict[str, str] = {}  # entry -> "decided" / "dead" / "duplicate" / ...
        #: Event ids decided in this run: each round of fates reads the streams from the
        #: first entry again, and a re-sent event's decision is its first entry's.
        self.decided: set[str] = set()
        self.failures = 0

    def run(self, wait_s: float) -> dict[str, Progress]:
        """Settle what can be settled within `wait_s`; the rest with its progress."""
        deadline = time.monotonic() + wait_s
        progress: dict[str, Progress] = {}
        while self.waiting or self.known:
            left = deadline - time.monotonic()
            if self.waiting:
                self._take_fates(self.waiting, max(0.05, min(1.0, left)))
            progress = self.publisher.progress([*self.waiting, *self.known])
            for entry in [e for e in self.known if progress[e] == "done"]:
                self.known.discard(entry)
                self._report(entry, "duplicate", "duplicate of an event already applied "
                             "(same event_id); nothing changed")  # fmt: skip
            done = [e for e in self.waiting if progress[e] == "done"]
            if done:
                # A decision is written before its entry is acknowledged: look once more.
                self._take_fates(done, 0.05)
                for entry in [e for e in done if e in self.waiting]:
                    self._settle_without_fate(entry)
            waits = [progress[e] for e in [*self.waiting, *self.known]]
            if waits and all(p == "deferred" for p in waits):
                break  # nothing will change until the enrolment arrives
            if time.monotonic() >= deadline:
                break
        return {e: progress.get(e, "unread") for e in [*self.waiting, *sorted(self.known)]}

    def _take_fates(self, entries: list[str], timeout: float) -> None:
        for entry, fate in self.publisher.fates(list(entries), timeout):
            self._report_fate(entry, fate)

    def _report_fate(self, entry: str, fate: Fate) -> None:
        if isinstance(fate, DeadLetterInfo):
            self.failures += 1
            self._report(entry, "DEAD-LETTERED", fate.reason)
        elif str(fate.cause_event_id) not in self.decided:
            self.decided.add(str(fate.cause_event_id))
            self._report(
                entry, "decided", f"{fate.outcome} (stage {fate.to_stage}) - {fate.summary}"
            )

    def _settle_without_fate(self, entry: str) -> None:
        item = self.items[entry]
        earlier = self.repeat_of.get(entry)
        if earlier is not None and self.fates.get(earlier) != "DEAD-LETTERED":
            self._report(entry, "duplicate", f"duplicate of {earlier} (same event_id, "
                         "earlier in this file); nothing changed")  # fmt: skip
        elif item.event_type in NO_DECISION:
            self._report(entry, "applied", f"{item.event_type} (this event type has no decision)")
        elif item.event_id and item.event_id in self.publisher.applied(
            [(item.client_id, item.event_id)]
        ):
            self._report(entry, "duplicate", "duplicate of an event already applied "
                         "(same event_id); nothing changed")  # fmt: skip
        else:
            self._report(entry, "applied", "acknowledged without a decision")

    def _report(self, entry: str, kind: str, text: str) -> None:
        if entry in self.waiting:
            self.waiting.remove(entry)
        self.fates[entry] = kind
        print(f"{kind} {entry}: {text}", flush=True)

    def unsettled_line(self, entry: str, progress: Progress, wait_s: float) -> str:
        client = self.items[entry].client_id or "?"
        if progress == "deferred":
            return (
                f"deferred {entry}: waiting for the client's enrolment (client {client} is not "
                "enrolled; retried until it is, dead-lettered after REHABGATE_MAX_DELIVERIES)"
            )
        if progress == "pending":
            return f"pending {entry}: read by a gatekeeper, not settled within {wait_s:g}s"
        return f"unread {entry}: no gatekeeper read it within {wait_s:g}s (is one running?)"
