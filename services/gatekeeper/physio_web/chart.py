"""The timeline chart: an inline SVG, so the page needs no script and no network.

Pain during each session (solid) and the next morning (dashed) share a 0-10
scale; load per session is drawn as bars on its own scale (right); stages are
shaded bands behind; unlocks, step-backs, flags and clinician actions are marks
that link to their decision. Every point has a `<title>` tooltip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

from rehabgate.services.gatekeeper.audit.history import SessionFigures, Timeline, TimelineItem

OUTCOME_COLOURS = {
    "unlocked": "#1a7f37",
    "regressed": "#bc4c00",
    "flagged": "#1f2328",  # near black: apart from the red pain line, also in grayscale
    "completed": "#0969da",
}
STAGE_FILLS = ("#eef6ff", "#fff8e5", "#effaf1", "#fbefff", "#fff0ee", "#f0f3f6")


@dataclass(frozen=True)
class StageSpan:
    stage_id: str
    label: str
    start: datetime
    end: datetime
    entered_by: str


Scale = Callable[[datetime], float]
W, H = 960, 320
LEFT, RIGHT, TOP, BOTTOM = 44, 64, 30, 44


def chart(timeline: Timeline, spans: Sequence[StageSpan]) -> str:
    """Pain during (solid) and next morning (dashed) on 0-10, load per session as
    bars on their own scale, stage bands behind, decisions that mattered as marks."""
    sessions = timeline.sessions
    if not timeline.items:
        return '<p class="muted">Nothing recorded yet.</p>'
    start = min(i.occurred_at for i in timeline.items)
    # The client's own records set the time axis: a physio's action long after the
    # last session (today, on a stale client) would squeeze everything to the left;
    # it is in the history below instead.
    recorded = [i.occurred_at for i in timeline.items if i.clinician_id is None]
    end = max(recorded or [i.occurred_at for i in timeline.items])
    if end - start < timedelta(days=1):
        end = start + timedelta(days=1)
    span_s = (end - start).total_seconds()
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + (at - start).total_seconds() / span_s * plot_w

    def y(pain: float) -> float:
        return TOP + plot_h - pain / 10 * plot_h

    parts: list[str] = []
    for index, s in enumerate(spans):
        if s.start > end:
            continue
        x0, x1 = x(s.start), min(x(s.end), W - RIGHT)
        parts.append(
            f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1):.1f}" height="{plot_h}" '
            f'fill="{STAGE_FILLS[index % len(STAGE_FILLS)]}"><title>{escape(s.label)}</title></rect>'
        )
        if shown := _fitting(s.label, x1 - x0):
            parts.append(
                f'<text x="{x0 + 4:.1f}" y="{TOP - 8}" font-size="12" fill="#59636e">'
                f"{escape(shown)}</text>"
            )
    for pain in range(0, 11, 2):
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(pain):.1f}" y2="{y(pain):.1f}" '
            f'stroke="#d1d9e0" stroke-width="1"/>'
            f'<text x="{LEFT - 8}" y="{y(pain) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#59636e">{pain}</text>'
        )
    parts.append(_load_bars(sessions, x, plot_h))
    parts.append(_marks([i for i in timeline.items if i.occurred_at <= end], x, plot_h))
    parts.append(_line(sessions, x, y, "pain_during", "#cf222e", ""))
    parts.append(_line(sessions, x, y, "next_morning_pain", "#0969da", ' stroke-dasharray="6 4"'))
    parts.append(_day_ticks(start, end, x))
    parts.append(
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" font-size="12" fill="#59636e" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" text-anchor="middle">pain (0-10)</text>'
    )
    label = (
        f"Pain during and next morning, and load, for {len(sessions)} sessions of "
        f"client {timeline.client_id}"
    )
    legend = (
        '<div class="legend"><span><i style="background:#cf222e"></i>pain during session</span>'
        '<span><i style="background:repeating-linear-gradient(90deg,#0969da 0 6px,transparent 6px 10px)">'
        "</i>pain next morning</span>"
        '<span><i style="background:#b6d7f5;height:10px"></i>load (reps × kg; right scale)</span>'
        '<span><i style="background:#1a7f37"></i>stage unlocked</span>'
        '<span><i style="background:#bc4c00"></i>stepped back</span>'
        '<span><i style="background:#1f2328;height:4px"></i>flagged</span>'
        '<span><i style="background:#8250df"></i>physio action</span>'
        "<span>shaded bands: stages</span></div>"
    )
    return (
        f'<div class="chart"><svg viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(parts)}</svg>{legend}</div>"
    )


def _fitting(label: str, width: float) -> str | None:
    """The stage's label if it fits its band, else "Stage 2", else "2", else none
    (the table below names every stage): never a label cut off mid-word."""
    short = label.split(":")[0]
    number = "".join(ch for ch in short if ch.isdigit())
    for text in (label, short, number):
        if text and len(text) * 7 + 8 <= width:
            return text
    return None


def _load_bars(sessions: Sequence[SessionFigures], x: Scale, plot_h: int) -> str:
    top = max((s.volume for s in sessions), default=0.0)
    if top <= 0:
        return ""
    parts = []
    for s in sessions:
        height = s.volume / top * plot_h * 0.85
        parts.append(
            f'<rect x="{x(s.occurred_at) - 4:.1f}" y="{TOP + plot_h - height:.1f}" width="8" '
            f'height="{height:.1f}" fill="#b6d7f5"><title>{escape(s.session_id)}: load '
            f"{s.volume:g}</title></rect>"
        )
    for fraction in (0.0, 0.5, 1.0):
        level = top * fraction
        yy = TOP + plot_h - fraction * plot_h * 0.85
        parts.append(
            f'<text x="{W - RIGHT + 6}" y="{yy + 4:.1f}" font-size="11" fill="#3e7cb1">'
            f"{level:g}</text>"
        )
    parts.append(
        f'<text x="{W - 14}" y="{TOP + plot_h / 2:.0f}" font-size="12" fill="#3e7cb1" '
        f'transform="rotate(90 {W - 14} {TOP + plot_h / 2:.0f})" text-anchor="middle">load</text>'
    )
    return "".join(parts)


def _marks(items: Sequence[TimelineItem], x: Scale, plot_h: int) -> str:
    parts = []
    for item in items:
        colour = None
        if item.clinician_id:
            colour = "#8250df"
        elif item.outcome in OUTCOME_COLOURS and item.stage_before is not None:
            colour = OUTCOME_COLOURS[item.outcome]
        if colour is None:
            continue
        xx = x(item.occurred_at)
        tip = f"#{item.seq} {_when(item.occurred_at)} {item.outcome}: {item.summary}"
        parts.append(
            f'<a href="#seq-{item.seq}"><line x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" '
            f'y2="{TOP + plot_h}" stroke="{colour}" stroke-width="2" stroke-dasharray="3 2">'
            f"<title>{escape(tip)}</title></line>"
            f'<circle cx="{xx:.1f}" cy="{TOP + plot_h + 8}" r="5" fill="{colour}">'
            f"<title>{escape(tip)}</title></circle></a>"
        )
    return "".join(parts)


def _line(
    sessions: Sequence[SessionFigures],
    x: Scale,
    y: Callable[[float], float],
    field: str,
    colour: str,
    dash: str,
) -> str:
    points = [(s, getattr(s, field)) for s in sessions if getattr(s, field) is not None]
    if not points:
        return ""
    path = " ".join(f"{x(s.occurred_at):.1f},{y(v):.1f}" for s, v in points)
    what = "during" if field == "pain_during" else "next morning"
    dots = "".join(
        f'<circle cx="{x(s.occurred_at):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}">'
        f"<title>{escape(_when(s.occurred_at))} {escape(s.session_id)}: pain {what} {v}/10</title>"
        "</circle>"
        for s, v in points
    )
    return (
        f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>{dots}'
    )


def _day_ticks(start: datetime, end: datetime, x: Scale) -> str:
    days = max((end - start).days, 1)
    step = max(1, round(days / 10))
    first = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    parts = []
    tick = first
    while tick <= end:
        xx = x(tick)
        parts.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{H - BOTTOM}" y2="{H - BOTTOM + 4}" '
            f'stroke="#59636e"/><text x="{xx:.1f}" y="{H - BOTTOM + 28}" font-size="11" '
            f'text-anchor="middle" fill="#59636e">{tick.strftime("%d %b")}</text>'
        )
        tick += timedelta(days=step)
    return "".join(parts)


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")
