"""Tools for protocol authors: simulate a history under a protocol, and replay a
stored client's history under another protocol version to see what would differ.

Both run the same pure engine the gatekeeper runs, so what they print is what
the service would decide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from rehabgate.schemas.inbound import ClientContactUpdated, ClientEnrolled, parse_inbound
from rehabgate.schemas.outbound import CriterionResult, ProgressionEvaluated
from rehabgate.services.gatekeeper.domain import Protocol
from rehabgate.services.gatekeeper.domain.decide import ProgressEvent, replay


class HistoryError(ValueError):
    """A history file that cannot be simulated; the message names the line."""


def read_history(path: Path) -> tuple[ClientEnrolled, list[ProgressEvent]]:
    """A JSON-lines file of one client's events; it must contain its enrolment."""
    enrolment: ClientEnrolled | None = None
    events: list[ProgressEvent] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = parse_inbound(line)
        except ValidationError as exc:
            raise HistoryError(f"{path}:{number}: {exc.errors()[0]['msg']}") from None
        if isinstance(event, ClientEnrolled):
            enrolment = event
        elif not isinstance(event, ClientContactUpdated):
            events.append(event)
    if enrolment is None:
        raise HistoryError(f"{path}: no client.enrolled event")
    return enrolment, events


def simulate(
    protocol: Protocol, enrolment: ClientEnrolled, events: Sequence[ProgressEvent]
) -> list[ProgressionEvaluated]:
    """Every decision the engine makes for this history under `protocol`."""
    return [d.evaluation for d in replay(protocol, enrolment, events) if d.evaluation]


def render(decisions: Iterable[ProgressionEvaluated], as_json: bool = False) -> str:
    if as_json:
        return "\n".join(json.dumps(d.model_dump(mode="json")) for d in decisions)
    return "\n\n".join(_render_one(d) for d in decisions)


def _render_one(d: ProgressionEvaluated) -> str:
    when = d.occurred_at.strftime("%Y-%m-%d %H:%M")
    move = (
        f"{d.from_stage} -> {d.to_stage}" if d.from_stage not in (None, d.to_stage) else d.to_stage
    )
    lines = [f"{when}  {d.cause_event_type:<17} {d.outcome.upper():<9} {move}", f"  {d.summary}"]
    lines += [_row(c) for c in d.criteria]
    return "\n".join(lines)


def _row(c: CriterionResult) -> str:
    mark = {"passed": "ok  ", "failed": "FAIL", "unknown": "??  "}[c.status]
    if c.role != "exit":
        mark = {"passed": "-   ", "failed": "HIT ", "unknown": "??  "}[c.status]
    return f"    {mark} {c.role:<9} {c.id:<22} {c.explanation}"


def differences(
    current: Sequence[ProgressionEvaluated], other: Sequence[ProgressionEvaluated]
) -> list[str]:
    """Decision-by-decision differences, matched by the event that caused them."""
    by_cause: Mapping[str, ProgressionEvaluated] = {str(d.cause_event_id): d for d in other}
    lines = []
    for mine in current:
        theirs = by_cause.get(str(mine.cause_event_id))
        when = mine.occurred_at.strftime("%Y-%m-%d %H:%M")
        if theirs is None:
            lines.append(f"{when} {mine.cause_event_type}: {mine.outcome} -> (no decision)")
        elif (mine.outcome, mine.to_stage) != (theirs.outcome, theirs.to_stage):
            lines.append(
                f"{when} {mine.cause_event_type}: {mine.outcome} ({mine.to_stage}) -> "
                f"{theirs.outcome} ({theirs.to_stage}): {theirs.summary}"
            )
    return lines
