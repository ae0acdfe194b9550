"""Plain words for the templates: values, stages, outcomes and criteria as a
person reads them (no list syntax, no internal codes), and the "what is still
needed" box. Registered as Jinja2 filters and globals (app.templates)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from rehabgate.services.gatekeeper.audit.history import CriterionRow, Timeline, TimelineItem

from .chart import StageSpan, chart

PAIN = "NRS 0-10"
TITLES = {
    200: "Records cannot be read",
    400: "Bad request",
    403: "Refused",
    404: "Not found",
    409: "Cannot act",
    413: "Too large",
}
EVENT_LABELS = {
    "client.enrolled": "enrolled",
    "session.logged": "session",
    "checkin.logged": "morning check-in",
    "clinician.action": "physio action",
    "client.discharged": "discharged",
}
ACTION_LABELS = {
    "approve": "approval",
    "hold": "hold",
    "regress": "step back",
    "advance_override": "advance by override",
}
RESULT_WORDS = {
    "exit": {"passed": "met", "failed": "not met", "unknown": "not known yet"},
    "step_back": {"passed": "not triggered", "failed": "triggered", "unknown": "unknown"},
    "safety": {"passed": "not triggered", "failed": "triggered", "unknown": "unknown"},
}
ROLE_WORDS = {"exit": "to move on", "step_back": "step-back rule", "safety": "safety rule"}


def client_url(client_id: str, path: str = "/physio/client", **extra: str) -> str:
    return f"{path}?{urlencode({'client': client_id, **extra})}"


def when(at: datetime) -> str:
    return at.strftime("%d %b %Y, %H:%M")


def listing(values: Sequence[Any]) -> str:
    words = [value(v) for v in values]
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def value(observed: Any, unit: str | None = None) -> str:
    if observed is None:
        return "not known yet"
    if isinstance(observed, list | tuple):
        text = listing(observed)
    elif isinstance(observed, bool):
        return "yes" if observed else "no"
    elif isinstance(observed, float):
        text = f"{observed:g}"
    else:
        text = str(observed)
    if unit == PAIN:
        return f"{text} out of 10"
    return f"{text} {unit}" if unit else text


def stage_label(stage_id: str, name: str | None, number: int | None) -> str:
    """Protocol stage names usually say "Stage 2: ..." or "Week 4" already."""
    name = name or stage_id.replace("-", " ")
    if number is None or name.lower().startswith(("stage", "week", "phase")):
        return name
    return f"{number}. {name}"


def item_stage(item: TimelineItem) -> str:
    return stage_label(item.stage_after, item.stage_after_name, item.stage_number)


def action_label(item: TimelineItem) -> str:
    action = item.clinician_action or ""
    return ACTION_LABELS.get(action, action.replace("_", " "))


def routine(item: TimelineItem) -> bool:
    return item.clinician_id is None and not item.stage_changed and item.outcome in ("held", None)


def result_word(c: CriterionRow) -> str:
    return RESULT_WORDS[c.role][c.status]


def result_kind(c: CriterionRow) -> str:
    if c.status == "unknown":
        return "unknown"
    if c.role == "exit":
        return c.status
    return "triggered" if c.status == "failed" else "passed"


def source(text: str) -> str:
    """A source key ("silbernagel-2007-phase1-inferred") as a readable citation."""
    parts = [p for p in text.replace("_", "-").split("-") if p]
    if not parts:
        return ""
    year = next((p for p in parts if p.isdigit() and len(p) == 4), None)
    author = parts[0].capitalize()
    rest = [p for p in parts[1:] if p != year and p not in ("inferred",)]
    cited = f"{author} {year}" if year else author
    if rest:
        cited += " (" + " ".join(rest) + ")"
    if "inferred" in parts:
        cited += ", adapted"
    return cited


def still_needed(timeline: Timeline) -> list[CriterionRow]:
    """The exit criteria of the client's latest decision not yet met."""
    last = next((i for i in reversed(timeline.items) if i.criteria), None)
    if last is None:
        return []
    return [c for c in last.criteria if c.role == "exit" and c.status != "passed"]


def needs_line(c: CriterionRow) -> str:
    """One line of the "still needed" box: the criterion in words, with what was
    observed and what it takes, unless the words already say both."""
    if c.observed is None:
        return f"{c.explanation}: not known yet"
    shown, wanted = value(c.observed, c.unit), value(c.threshold, c.unit)
    plain_observed = value(c.observed)
    if plain_observed in c.explanation and value(c.threshold) in c.explanation:
        return c.explanation
    return f"{c.explanation}: now {shown}, needs {wanted}"


def attention_now(timeline: Timeline) -> list[CriterionRow]:
    """Safety and step-back rules that fired in the latest decision."""
    last = next((i for i in reversed(timeline.items) if i.criteria), None)
    if last is None:
        return []
    return [c for c in last.criteria if c.role != "exit" and c.status == "failed"]


def stage_spans(timeline: Timeline) -> list[StageSpan]:
    items = timeline.items
    if not items:
        return []
    spans: list[StageSpan] = []
    end = max(i.occurred_at for i in items)
    for item in items:
        if item.stage_before is not None and not item.stage_changed:
            continue
        how = "enrolled" if item.stage_before is None else _entered_by(item)
        if spans:
            spans[-1] = StageSpan(**{**spans[-1].__dict__, "end": item.occurred_at})
        spans.append(StageSpan(item.stage_after, item_stage(item), item.occurred_at, end, how))
    return spans


def _entered_by(item: TimelineItem) -> str:
    verb = {"unlocked": "unlocked", "regressed": "stepped back", "completed": "completed"}.get(
        item.outcome or "", "moved"
    )
    if item.clinician_id:
        return f"{verb} by physio {item.clinician_id} ({action_label(item)})"
    return f"{verb} by the rules"


def chart_svg(timeline: Timeline) -> Markup:
    """The chart (chart.py escapes every text it draws), or a note when these
    records cannot be drawn; the rest of the page still shows."""
    try:
        return Markup(chart(timeline, stage_spans(timeline)))  # noqa: S704 - escaped in chart.py
    except (OverflowError, ValueError, ArithmeticError):
        return Markup(
            '<p class="error">The chart cannot be drawn: some of these records carry dates '
            "outside the range rehabgate can plot. The tables below show every record.</p>"
        )


def plain(text: str | None) -> str:
    """A decision's summary as a person reads it: event names in words, and the
    " | " between its parts as a sentence break."""
    if not text:
        return ""
    for code, words in EVENT_LABELS.items():
        text = text.replace(code, words)
    return text.replace(" | ", "; ")


def days(start: datetime, end: datetime) -> str:
    return f"{(end - start).total_seconds() / 86400:.1f}"


GLOBALS = {
    "client_url": client_url,
    "still_needed": still_needed,
    "needs_line": needs_line,
    "attention_now": attention_now,
    "stage_spans": stage_spans,
    "chart_svg": chart_svg,
    "routine": routine,
    "days": days,
    "EVENT_LABELS": EVENT_LABELS,
    "ROLE_WORDS": ROLE_WORDS,
}
FILTERS = {
    "when": when,
    "value": value,
    "item_stage": item_stage,
    "action_label": action_label,
    "result_word": result_word,
    "result_kind": result_kind,
    "source": source,
    "plain": plain,
}
