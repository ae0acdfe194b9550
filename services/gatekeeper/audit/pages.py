"""Server-rendered HTML for physios: a clinic overview and a client timeline.

No script, no external stylesheet, font or image: the CSS is inline and the chart
is an inline SVG, so the pages work offline and the Content-Security-Policy can
forbid every external load. Decisions expand with plain `<details>` elements.
Everything dynamic is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import urlencode

from rehabgate.schemas.outbound import Observed

from .chart import StageSpan, chart
from .history import CriterionRow, Timeline, TimelineItem
from .overview import ClientRow, ClinicOverview
from .verify import Verdict

CSS = """
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--ok:#1a7f37;
--held:#6e7781;--regressed:#bc4c00;--flagged:#cf222e;--completed:#0969da;--clin:#8250df}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:#fff}
header.top{background:#24292f;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1rem;align-items:center}
header.top a{color:#fff}header.top .who{margin-left:auto;font-size:.9em;opacity:.85}
main{max-width:1180px;margin:0 auto;padding:1rem 1.2rem 3rem}
h1{font-size:1.5rem;margin:.4rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;
border-bottom:1px solid var(--line);padding-bottom:.25rem}
a{color:#0969da}.muted{color:var(--muted)}.small{font-size:.85em}
.facts{display:flex;flex-wrap:wrap;gap:.4rem 1.4rem;margin:.3rem 0 .8rem}
.facts div b{display:block;font-size:.75em;color:var(--muted);font-weight:600;
text-transform:uppercase;letter-spacing:.03em}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:1rem;font-size:.8em;
font-weight:600;color:#fff;background:var(--held);white-space:nowrap}
.b-unlocked,.b-passed,.b-active{background:var(--ok)}.b-regressed{background:var(--regressed)}
.b-flagged,.b-failed,.b-triggered{background:var(--flagged)}.b-completed{background:var(--completed)}
.b-clinician{background:var(--clin)}.b-unknown,.b-on_hold{background:#9a6700}
.b-discharged{background:#424a53}.b-none{background:#8c959f}
.banner{padding:.55rem .8rem;border-radius:6px;margin:.6rem 0;border:1px solid}
.banner.ok{background:#dafbe1;border-color:#aceebb}.banner.bad{background:#ffebe9;border-color:#ffcecb}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg);font-size:.85em}
td.client{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.criteria td:nth-child(2){white-space:nowrap}
.chart{border:1px solid var(--line);border-radius:6px;padding:.4rem;background:#fff}
.chart svg{width:100%;height:auto;display:block}
.legend{display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;font-size:.85em;color:var(--muted);margin:.3rem .2rem}
.legend i{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:.3rem}
ol.decisions{list-style:none;padding:0;margin:0}
ol.decisions>li{border:1px solid var(--line);border-left:5px solid var(--held);border-radius:6px;
margin:.35rem 0;background:#fff}
ol.decisions>li.o-unlocked{border-left-color:var(--ok)}ol.decisions>li.o-regressed{border-left-color:var(--regressed)}
ol.decisions>li.o-flagged{border-left-color:var(--flagged)}ol.decisions>li.o-completed{border-left-color:var(--completed)}
ol.decisions>li.clinician{border-left-color:var(--clin);background:#fbf8ff}
summary{cursor:pointer;padding:.45rem .7rem;display:grid;
grid-template-columns:3.2rem 8.6rem 12.5rem 6.6rem 1fr;gap:.6rem;align-items:baseline}
summary::marker{content:""}summary::-webkit-details-marker{display:none}
summary .seq{color:var(--muted);font-variant-numeric:tabular-nums}
summary .why{grid-column:2/-1;color:var(--ink)}
details[open] summary{border-bottom:1px solid var(--line);background:var(--bg)}
.body{padding:.5rem .8rem .8rem}
.clin{border:1px solid #d8b9ff;background:#fbefff;border-radius:6px;padding:.5rem .7rem;margin:.3rem 0 .6rem}
.meta{font-size:.8em;color:var(--muted);margin-top:.5rem;word-break:break-all}
.filter{margin:.4rem 0;font-size:.9em}
#only-changes:checked~ol.decisions>li.routine{display:none}
.cards{display:flex;gap:.8rem;flex-wrap:wrap;margin:.6rem 0}
.cards div{border:1px solid var(--line);border-radius:6px;padding:.5rem .9rem;min-width:9rem}
.cards b{display:block;font-size:1.6rem}
.stage-group{margin:.4rem 0 .9rem}.stage-group h3{font-size:1rem;margin:.2rem 0}
ul.clients{list-style:none;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:.4rem}
ul.clients li{border:1px solid var(--line);border-radius:6px;padding:.25rem .6rem}
form.login{max-width:26rem;border:1px solid var(--line);border-radius:6px;padding:1rem}
form.login input{width:100%;padding:.4rem;margin:.3rem 0 .8rem;font:inherit}
form.login button{padding:.4rem 1rem;font:inherit}
.error{color:var(--flagged)}
"""

PAIN = "NRS 0-10"


def client_url(client_id: str, path: str = "/physio/client") -> str:
    return f"{path}?{urlencode({'client': client_id})}"


def layout(title: str, body: str, clinic_id: str | None = None) -> str:
    who = (
        f'<span class="who">clinic <b>{escape(clinic_id)}</b> · '
        '<a href="/physio/logout">sign out</a></span>'
        if clinic_id
        else ""
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · rehabgate</title><style>{CSS}</style></head><body>"
        '<header class="top"><b>rehabgate</b><a href="/physio">clinic overview</a>'
        f"{who}</header><main>{body}</main></body></html>"
    )


def badge(text: str, kind: str | None = None) -> str:
    label = text.replace("_", " ")
    return f'<span class="badge b-{escape(kind or text)}">{escape(label)}</span>'


def when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def value(observed: Observed, unit: str | None = None) -> str:
    if observed is None:
        return "—"
    if isinstance(observed, bool):
        text = "yes" if observed else "no"
    elif isinstance(observed, float):
        text = f"{observed:g}"
    else:
        text = str(observed)
    if unit == PAIN and not isinstance(observed, bool):
        text += "/10"
    elif unit and not isinstance(observed, bool):
        text += f" {unit}"
    return escape(text)


# --- sign-in -------------------------------------------------------------------


def login_page(error: str | None = None) -> str:
    problem = f'<p class="error">{escape(error)}</p>' if error else ""
    return layout(
        "Sign in",
        "<h1>Physio sign-in</h1>"
        '<p class="muted">Enter your clinic\'s access token. It is kept in a browser '
        "cookie for this site only; sign out removes it.</p>"
        f'{problem}<form class="login" method="post" action="/physio/login">'
        '<label for="token">Clinic token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        "<button type=submit>Sign in</button></form>",
    )


def message_page(title: str, text: str, clinic_id: str | None = None) -> str:
    return layout(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>", clinic_id)


# --- overview ------------------------------------------------------------------


def overview_page(overview: ClinicOverview) -> str:
    rows = overview.clients
    count = {s: sum(1 for c in rows if c.status == s) for s in ("flagged", "on_hold", "completed")}
    cards = (
        f'<div class="cards"><div><b>{len(rows)}</b>clients</div>'
        f"<div><b>{count['flagged']}</b>flagged</div>"
        f"<div><b>{count['on_hold']}</b>on hold by a physio</div>"
        f"<div><b>{count['completed']}</b>completed</div></div>"
    )
    flagged = _client_table(
        overview.flagged, "Nobody is flagged.", ("stage", "since", "last decision")
    )
    held = _client_table(
        overview.held_longest[:10],
        "No client is working on a stage.",
        ("stage", "days at stage", "held decisions", "status", "last decision"),
    )
    groups = "".join(
        f'<div class="stage-group"><h3>{escape(label)}</h3><ul class="clients">'
        + "".join(
            f'<li><a href="{escape(client_url(c.client_id))}">{escape(c.client_id)}</a> '
            f"{badge(c.status)}</li>"
            for c in members
        )
        + "</ul></div>"
        for label, members in overview.by_stage()
    )
    body = (
        f"<h1>Clinic {escape(overview.clinic_id)}</h1>{cards}"
        f"<h2>Flagged to a physio</h2>{flagged}"
        "<h2>Held longest at their current stage</h2>"
        '<p class="muted small">Days from entering the stage to the client\'s latest event, '
        "and how many decisions held them there.</p>"
        f"{held}<h2>Clients by current stage</h2>{groups or '<p>No clients yet.</p>'}"
    )
    return layout(f"Clinic {overview.clinic_id}", body, overview.clinic_id)


def _client_table(rows: Sequence[ClientRow], empty: str, columns: Sequence[str]) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    cells = {
        "stage": lambda c: escape(c.stage_label),
        "since": lambda c: escape(when(c.at_stage_since)),
        "days at stage": lambda c: f"{c.days_at_stage:.1f}",
        "held decisions": lambda c: str(c.holds_at_stage),
        "status": lambda c: badge(c.status),
        "last decision": lambda c: escape(c.last_summary or ""),
    }
    numeric = {"days at stage", "held decisions"}
    head = "".join(f"<th>{escape(c)}</th>" for c in ("client", *columns))
    body = "".join(
        f'<tr><td class="client"><a href="{escape(client_url(c.client_id))}">'
        f"{escape(c.client_id)}</a>"
        + ("" if c.chain_ok else " " + badge("chain broken", "failed"))
        + "</td>"
        + "".join(
            f"<td{' class=num' if col in numeric else ''}>{cells[col](c)}</td>" for col in columns
        )
        + "</tr>"
        for c in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- timeline ------------------------------------------------------------------


def stage_spans(timeline: Timeline) -> list[StageSpan]:
    """The stages over time, from each entry that changed the stage."""
    items = timeline.items
    if not items:
        return []
    spans: list[StageSpan] = []
    end = max(i.occurred_at for i in items)
    for item in items:
        if item.stage_before is not None and not item.stage_changed:
            continue
        label = _stage_label(item)
        how = "enrolled" if item.stage_before is None else _entered_by(item)
        if spans:
            spans[-1] = StageSpan(**{**spans[-1].__dict__, "end": item.occurred_at})
        spans.append(StageSpan(item.stage_after, label, item.occurred_at, end, how))
    return spans


def _stage_label(item: TimelineItem) -> str:
    return stage_label(item.stage_after, item.stage_after_name, item.stage_number)


def stage_label(stage_id: str, name: str | None, number: int | None) -> str:
    """Protocol stage names usually say "Stage 2: ..." already; otherwise number them."""
    name = name or stage_id
    if number is None or name.lower().startswith("stage"):
        return name
    return f"{number}. {name}"


EVENT_LABELS = {
    "client.enrolled": "enrolled",
    "session.logged": "session",
    "checkin.logged": "morning check-in",
    "clinician.action": "clinician action",
    "client.discharged": "discharged",
}
ACTION_LABELS = {
    "approve": "approve",
    "hold": "hold",
    "regress": "regress",
    "advance_override": "advance by override",
}


def _entered_by(item: TimelineItem) -> str:
    verb = item.outcome or "moved"
    if item.clinician_id:
        return f"{verb} by clinician {item.clinician_id} ({_action(item)})"
    return f"{verb} by the rules"


def timeline_page(timeline: Timeline, verdict: Verdict, clinic_id: str) -> str:
    current = timeline.current
    client = timeline.client_id
    if verdict.ok:
        banner = (
            f'<div class="banner ok">Audit chain verified: {verdict.entries} entries, '
            "none modified, deleted, reordered or missing.</div>"
        )
    else:
        broken = verdict.broken
        banner = (
            '<div class="banner bad"><b>Audit chain broken</b>: '
            f"{escape(broken.kind if broken else '')} at entry "
            f"{escape(str(broken.seq if broken else ''))}: "
            f"{escape(broken.detail if broken else '')}. Do not rely on this history.</div>"
        )
    facts = ""
    if current is not None:
        facts = (
            '<div class="facts">'
            f"<div><b>Protocol</b>{escape(timeline.protocol or '')}</div>"
            f"<div><b>Current stage</b>{escape(_stage_label(current))}"
            f"{f' ({current.stage_number} of {current.stage_count})' if current.stage_count else ''}"
            "</div>"
            f"<div><b>Status</b>{badge(current.status_after)}</div>"
            f"<div><b>Decisions</b>{sum(1 for i in timeline.items if i.outcome)}</div>"
            f"<div><b>Sessions</b>{len(timeline.sessions)}</div>"
            f'<div><b>Export</b><a href="{escape(client_url(client, "/physio/api/history.csv"))}">CSV</a>'
            f' · <a href="{escape(client_url(client, "/physio/api/history"))}">JSON</a></div>'
            "</div>"
        )
    spans = stage_spans(timeline)
    body = (
        f"<h1>Client {escape(client)}</h1>{facts}{banner}"
        + (
            f'<p class="error">{timeline.unreadable} audit entries could not be read.</p>'
            if timeline.unreadable
            else ""
        )
        + "<h2>Pain and load per session</h2>"
        + _chart_or_note(timeline, spans)
        + "<h2>Stages over time</h2>"
        + _stages_table(spans)
        + "<h2>Decisions</h2>"
        + '<p class="muted small">Each line is one audit entry; open it for the criteria '
        "table: what was observed, against which threshold, and the verdict.</p>"
        + '<input type="checkbox" id="only-changes"> <label class="filter" for="only-changes">'
        "Show only stage changes, flags and clinician actions</label>"
        + '<ol class="decisions">'
        + "".join(_decision(item) for item in timeline.items)
        + "</ol>"
    )
    return layout(f"Client {client}", body, clinic_id)


def _chart_or_note(timeline: Timeline, spans: Sequence[StageSpan]) -> str:
    """The chart, or a note where these records cannot be drawn (dates that intake
    refuses today, stored before it did): the rest of the page still shows."""
    try:
        return chart(timeline, spans)
    except (OverflowError, ValueError, ArithmeticError):
        return (
            '<p class="error">The chart cannot be drawn: some of these records carry dates '
            "outside the range rehabgate can plot. The tables below show every record.</p>"
        )


def _stages_table(spans: Sequence[StageSpan]) -> str:
    if not spans:
        return '<p class="muted">No stages yet.</p>'
    rows = "".join(
        f"<tr><td>{escape(s.label)}</td><td>{escape(when(s.start))}</td>"
        f"<td>{escape(when(s.end))}</td>"
        f'<td class="num">{(s.end - s.start).total_seconds() / 86400:.1f}</td>'
        f"<td>{escape(s.entered_by)}</td></tr>"
        for s in spans
    )
    return (
        "<table><thead><tr><th>stage</th><th>from</th><th>to</th><th>days</th>"
        f"<th>entered</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _routine(item: TimelineItem) -> bool:
    return item.clinician_id is None and not item.stage_changed and item.outcome in ("held", None)


def _decision(item: TimelineItem) -> str:
    classes = [f"o-{item.outcome or 'none'}"]
    if item.clinician_id:
        classes.append("clinician")
    if _routine(item):
        classes.append("routine")
    stage = (
        f"{escape(item.stage_before or '')} → <b>{escape(item.stage_after)}</b>"
        if item.stage_changed
        else escape(item.stage_after)
    )
    by = badge(f"clinician {item.clinician_id}", "clinician") if item.clinician_id else ""
    superseded = (
        f' <span class="muted small">(superseded by #{item.superseded_by})</span>'
        if item.superseded_by
        else ""
    )
    summary = (
        f'<summary><span class="seq">#{item.seq}</span><span>{escape(when(item.occurred_at))}</span>'
        f"<span>{escape(EVENT_LABELS.get(item.event_type, item.event_type))}"
        f"{escape(f': {_action(item)}' if item.clinician_action else '')}</span><span>{badge(item.outcome or 'recorded', item.outcome or 'none')}</span>"
        f"<span>{stage} {by}{superseded}</span>"
        f'<span class="why">{escape(item.summary)}</span></summary>'
    )
    return (
        f'<li id="seq-{item.seq}" class="{" ".join(classes)}"><details>{summary}'
        f'<div class="body">{_decision_body(item)}</div></details></li>'
    )


def _action(item: TimelineItem) -> str:
    action = item.clinician_action or ""
    return ACTION_LABELS.get(action, action)


def _decision_body(item: TimelineItem) -> str:
    parts = []
    if item.corrections:
        rows = "".join(
            f"<li>{escape(when(c.occurred_at))}, "
            f"{escape(EVENT_LABELS.get(c.cause_event_type, c.cause_event_type))}: "
            f"{badge(c.superseded_outcome or 'no decision', c.superseded_outcome or 'none')} → "
            f"{badge(c.outcome, c.outcome)} {escape(c.summary)}</li>"
            for c in item.corrections
        )
        parts.append(
            '<div class="corrections"><b>This event arrived late</b>: with it in place, '
            f"these later decisions came out differently and were corrected:<ul>{rows}</ul></div>"
        )
    if item.clinician_id:
        parts.append(
            f'<div class="clin"><b>Clinician action</b>: '
            f"{escape(_action(item))} by "
            f"<b>{escape(item.clinician_id)}</b><br>Reason: “{escape(item.clinician_reason or '')}”"
            f"<br><span class=muted>{escape(item.rules_verdict or '')}</span></div>"
        )
    if item.session:
        s = item.session
        parts.append(
            '<div class="facts">'
            f"<div><b>Session</b>{escape(s.session_id)}</div>"
            f"<div><b>Pain during</b>{s.pain_during}/10</div>"
            f"<div><b>Pain after</b>{value(s.pain_after, PAIN)}</div>"
            f"<div><b>Next morning</b>{value(s.next_morning_pain, PAIN)}</div>"
            f"<div><b>Volume</b>{s.volume:g}</div>"
            f"<div><b>Completed</b>{value(s.completed)}</div>"
            f"<div><b>Deload</b>{value(s.deload)}</div></div>"
        )
    if item.checkin:
        c = item.checkin
        parts.append(
            '<div class="facts">'
            f"<div><b>Morning pain</b>{c.morning_pain}/10</div>"
            f"<div><b>Stiffness</b>{c.morning_stiffness}/10</div>"
            f"<div><b>Swelling</b>{value(c.swelling)}</div></div>"
        )
    if item.criteria:
        parts.append(criteria_table(item.criteria))
    elif item.outcome is None:
        parts.append('<p class="muted">Nothing was decided for this event.</p>')
    if item.supersedes:
        parts.append(
            f'<p class="small">This session replaces the one logged in entry '
            f'<a href="#seq-{item.supersedes}">#{item.supersedes}</a> (a correction).</p>'
        )
    parts.append(
        f'<div class="meta">event {escape(item.event_id)} · audit entry {escape(item.entry_id)} '
        f"(seq {item.seq}, recorded {escape(item.recorded_at.isoformat(timespec='seconds'))}) · "
        f"{escape(item.protocol or '')} · service {escape(item.service_version or '')}</div>"
    )
    return "".join(parts)


RESULT_WORDS = {
    "exit": {"passed": "met", "failed": "not met", "unknown": "not known yet"},
    "step_back": {"passed": "not triggered", "failed": "triggered", "unknown": "unknown"},
    "safety": {"passed": "not triggered", "failed": "triggered", "unknown": "unknown"},
}
ROLE_WORDS = {"exit": "exit criterion", "step_back": "step-back rule", "safety": "safety rule"}


def criteria_table(criteria: Iterable[CriterionRow]) -> str:
    rows = "".join(
        f"<tr><td><b>{escape(c.id)}</b><br><span class='muted small'>{escape(c.kind)}</span></td>"
        f"<td>{escape(ROLE_WORDS[c.role])}</td>"
        f'<td class="num">{value(c.observed, c.unit)}</td>'
        f'<td class="num">{value(c.threshold, c.unit)}</td>'
        f"<td>{badge(RESULT_WORDS[c.role][c.status], _result_kind(c))}</td>"
        f"<td>{escape(c.explanation)}"
        + (f"<br><span class='muted small'>{escape(c.window)}</span>" if c.window else "")
        + f"</td><td class=small>{escape(c.source)}</td></tr>"
        for c in criteria
    )
    return (
        '<table class="criteria"><thead><tr><th>criterion</th><th>role</th><th>observed</th>'
        "<th>threshold</th><th>result</th><th>explanation</th><th>source</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _result_kind(c: CriterionRow) -> str:
    if c.status == "unknown":
        return "unknown"
    if c.role == "exit":
        return c.status
    return "triggered" if c.status == "failed" else "passed"
