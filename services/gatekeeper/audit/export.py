"""The timeline as JSON pages, CSV and a terminal table: one shape for the CLI and
the HTTP API, so a physio's export and an operator's terminal agree.

CSV cells holding free text (a clinician's reason, summaries) are defused against
spreadsheet formula injection: a leading = + - @ gets a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from typing import Any

from .history import Timeline, TimelineItem
from .verify import Verdict

MAX_PER_PAGE = 500

CSV_COLUMNS = (
    "seq",
    "occurred_at",
    "recorded_at",
    "event_type",
    "event_id",
    "outcome",
    "stage_before",
    "stage_after",
    "status_after",
    "decided_by",
    "clinician_id",
    "clinician_action",
    "clinician_reason",
    "rules_verdict",
    "summary",
    "session_id",
    "pain_during",
    "pain_after",
    "next_morning_pain",
    "volume",
    "morning_pain",
    "swelling",
    "criteria_passed",
    "criteria_failed",
    "criteria_unknown",
    "criteria",
    "supersedes",
    "superseded_by",
    "protocol",
    "entry_id",
    "service_version",
)


def chain_json(verdict: Verdict) -> dict[str, Any]:
    broken = verdict.broken
    return {
        "ok": verdict.ok,
        "entries": verdict.entries,
        "version": verdict.version,
        "broken": None
        if broken is None
        else {
            "kind": broken.kind,
            "position": broken.position,
            "entry_id": broken.entry_id,
            "seq": broken.seq,
            "detail": broken.detail,
        },
    }


def history_page(timeline: Timeline, verdict: Verdict, page: int, per_page: int) -> dict[str, Any]:
    """One page of the timeline, oldest first; `page` counts from 1."""
    total = len(timeline.items)
    start = (page - 1) * per_page
    items = timeline.items[start : start + per_page]
    return {
        "client_id": timeline.client_id,
        "clinic_id": timeline.clinic_id,
        "protocol": timeline.protocol,
        "chain": chain_json(verdict),
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": max(math.ceil(total / per_page), 1),
        "items": [
            {**item.model_dump(mode="json"), "outcome_label": item.outcome_label} for item in items
        ],
    }


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def csv_row(item: TimelineItem) -> dict[str, Any]:
    session, checkin = item.session, item.checkin
    statuses = [c.status for c in item.criteria]
    row: dict[str, Any] = {
        "seq": item.seq,
        "occurred_at": item.occurred_at.isoformat(),
        "recorded_at": item.recorded_at.isoformat(),
        "event_type": item.event_type,
        "event_id": item.event_id,
        "outcome": item.outcome_label,
        "stage_before": item.stage_before,
        "stage_after": item.stage_after,
        "status_after": item.status_after,
        "decided_by": item.decided_by,
        "clinician_id": item.clinician_id,
        "clinician_action": item.clinician_action,
        "clinician_reason": item.clinician_reason,
        "rules_verdict": item.rules_verdict,
        "summary": item.summary,
        "session_id": session.session_id if session else None,
        "pain_during": session.pain_during if session else None,
        "pain_after": session.pain_after if session else None,
        "next_morning_pain": session.next_morning_pain if session else None,
        "volume": session.volume if session else None,
        "morning_pain": checkin.morning_pain if checkin else None,
        "swelling": checkin.swelling if checkin else None,
        "criteria_passed": statuses.count("passed"),
        "criteria_failed": statuses.count("failed"),
        "criteria_unknown": statuses.count("unknown"),
        "criteria": "; ".join(
            f"{c.role}:{c.id}={c.status} (observed {c.observed}, threshold {c.threshold})"
            for c in item.criteria
        ),
        "supersedes": item.supersedes,
        "superseded_by": item.superseded_by,
        "protocol": item.protocol,
        "entry_id": item.entry_id,
        "service_version": item.service_version,
    }
    return {k: _safe(v) for k, v in row.items()}


def to_csv(timeline: Timeline) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(csv_row(item) for item in timeline.items)
    return out.getvalue()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table_lines(timeline: Timeline, verdict: Verdict) -> Iterable[str]:
    """A readable terminal table: one line per entry, clinician actions and session
    figures on a second, indented line."""
    chain = (
        f"chain intact ({verdict.entries} entries)"
        if verdict.ok
        else f"CHAIN BROKEN: {verdict.broken.kind if verdict.broken else ''}"
    )
    current = timeline.current
    yield (
        f"{timeline.client_id} · clinic {timeline.clinic_id} · {timeline.protocol} · "
        f"now {current.stage_after} ({current.status_after}) · {chain}"
        if current
        else f"{timeline.client_id}: no audit entries"
    )
    yield f"{'#':>4}  {'when':<16}  {'cause':<16}  {'outcome':<9}  {'stage':<30}  {'by':<10}  why"
    for item in timeline.items:
        when = item.occurred_at.strftime("%Y-%m-%d %H:%M")
        stage = (
            f"{item.stage_before} → {item.stage_after}" if item.stage_changed else item.stage_after
        )
        by = item.decided_by or "-"
        yield (
            f"{item.seq:>4}  {when:<16}  {item.event_type:<16}  {item.outcome_label or '-':<9}  "
            f"{_cut(stage, 30):<30}  {by:<10}  {_cut(item.summary, 90)}"
        )
        extra = []
        if item.clinician_id:
            extra.append(
                f"clinician {item.clinician_id} ({item.clinician_action}): "
                f"{item.clinician_reason}; {item.rules_verdict}"
            )
        if item.session:
            s = item.session
            morning = "?" if s.next_morning_pain is None else s.next_morning_pain
            extra.append(
                f"session {s.session_id}: pain {s.pain_during}/10, next morning "
                f"{morning}/10, volume {s.volume:g}"
            )
        if item.superseded_by:
            extra.append(f"superseded by #{item.superseded_by}")
        for line in extra:
            yield f"{'':>4}  {'':<16}  ↳ {line}"
