"""A clinic at a glance: who needs a physio today, most urgent first, and where
everyone else stands. Pure: built from each client's state and timeline, and the
time the page is read (`now`).

The needs-attention queue, in this order of urgency (a client appears once, under
their most urgent reason, with every other reason that applies listed after it):

1. **flagged**: a safety rule fired; progression is paused until a physio acts.
2. **stepped back**: regressed within the last `stepped_back_days` days.
3. **awaiting approval**: every exit criterion is met except a clinician's approval.
4. **pain rising**: pain during the last three sessions rose each time.
5. **held long**: at the current stage more than `held_long_factor` times the
   stage's minimum days.
6. **no activity**: no session or check-in for `inactive_days` days.

Days at a stage count in event time (entering the stage to the latest event),
like every decision; "within the last N days" and "no activity" count to `now`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from rehabgate.services.gatekeeper.audit.history import Timeline
from rehabgate.services.gatekeeper.domain.history import ClientState


@dataclass(frozen=True)
class QueueRules:
    stepped_back_days: float = 7
    inactive_days: float = 5
    held_long_factor: float = 2


#: (key, badge text, urgency: lower is more urgent)
REASONS = {
    "flagged": ("flagged", 0),
    "stepped_back": ("stepped back", 1),
    "awaiting_approval": ("awaiting approval", 2),
    "pain_rising": ("pain rising", 3),
    "held_long": ("held long", 4),
    "inactive": ("no activity", 5),
}


class Attention(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    why: str

    @property
    def label(self) -> str:
        return REASONS[self.reason][0]


class ClientRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    protocol: str
    stage_id: str
    stage_name: str | None
    stage_number: int | None
    stage_count: int | None
    status: str
    at_stage_since: datetime
    last_event_at: datetime
    days_at_stage: float
    holds_at_stage: int
    last_outcome: str | None
    last_summary: str | None
    chain_ok: bool
    attention: tuple[Attention, ...] = ()

    @property
    def urgency(self) -> int:
        return min((REASONS[a.reason][1] for a in self.attention), default=99)

    @property
    def flagged(self) -> bool:
        return self.status == "flagged"

    @property
    def stage_label(self) -> str:
        name = self.stage_name or self.stage_id
        if self.stage_number and self.stage_count:
            return f"{name} ({self.stage_number} of {self.stage_count})"
        return name


class ClinicOverview(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clinic_id: str
    clients: tuple[ClientRow, ...]

    @property
    def flagged(self) -> tuple[ClientRow, ...]:
        return tuple(c for c in self.clients if c.flagged)

    @property
    def held_longest(self) -> tuple[ClientRow, ...]:
        """Clients still working on a stage (not completed or discharged), longest first."""
        waiting = [c for c in self.clients if c.status in ("active", "flagged", "on_hold")]
        return tuple(sorted(waiting, key=lambda c: (-c.days_at_stage, -c.holds_at_stage)))

    @property
    def queue(self) -> tuple[ClientRow, ...]:
        """Who needs attention, most urgent first (then longest at the stage)."""
        needing = [c for c in self.clients if c.attention]
        return tuple(sorted(needing, key=lambda c: (c.urgency, -c.days_at_stage, c.client_id)))

    @property
    def others(self) -> tuple[ClientRow, ...]:
        return tuple(
            sorted((c for c in self.clients if not c.attention), key=lambda c: c.client_id)
        )

    def by_stage(self) -> list[tuple[str, tuple[ClientRow, ...]]]:
        """(stage label, clients there), in protocol then stage order."""
        groups: dict[tuple[str, int, str], list[ClientRow]] = {}
        for c in self.clients:
            key = (c.protocol, c.stage_number or 0, c.stage_label)
            groups.setdefault(key, []).append(c)
        return [
            (f"{label} ({protocol})", tuple(sorted(rows, key=lambda r: r.client_id)))
            for (protocol, _, label), rows in sorted(groups.items())
        ]


def client_row(
    state: ClientState,
    timeline: Timeline,
    chain_ok: bool,
    now: datetime | None = None,
    rules: QueueRules | None = None,
) -> ClientRow:
    last_event = state.newest[0] if state.newest else state.enrolment.occurred_at
    holds = 0
    for item in reversed(timeline.items):
        if item.stage_before is None or item.stage_changed:
            break
        holds += item.outcome == "held"
    named = next((i for i in reversed(timeline.items) if i.stage_after_name), None)
    last = next((i for i in reversed(timeline.items) if i.outcome), None)
    since = state.stage_entered_at
    return ClientRow(
        client_id=state.client_id,
        protocol=state.protocol,
        stage_id=state.stage_id,
        stage_name=named.stage_after_name if named else None,
        stage_number=named.stage_number if named else None,
        stage_count=named.stage_count if named else None,
        status=state.status,
        at_stage_since=since,
        last_event_at=last_event,
        days_at_stage=max((last_event - since).total_seconds() / 86400, 0.0),
        holds_at_stage=holds,
        last_outcome=last.outcome if last else None,
        last_summary=last.summary if last else None,
        chain_ok=chain_ok,
        attention=attention(state.status, timeline, since, last_event, now, rules or QueueRules()),
    )


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    if days < 1:
        return "less than a day"
    whole = round(days)
    return f"{whole} day{'s' if whole != 1 else ''}"


def attention(
    status: str,
    timeline: Timeline,
    since: datetime,
    last_event: datetime,
    now: datetime | None,
    rules: QueueRules,
) -> tuple[Attention, ...]:
    """Every reason this client needs a physio, most urgent first (the module's rules)."""
    if status not in ("active", "flagged", "on_hold"):
        return ()
    now = now or last_event
    found: list[Attention] = []
    items = timeline.items
    last = next((i for i in reversed(items) if i.outcome), None)
    if status == "flagged":
        flag = next((i for i in reversed(items) if i.outcome == "flagged"), None)
        why = "a safety rule fired and progression is paused"
        if flag is not None:
            fired = [
                c.explanation for c in flag.criteria if c.role == "safety" and c.status == "failed"
            ]
            if fired:
                why = f"{fired[0]} ({_days(now - flag.occurred_at)} ago)"
        found.append(Attention(reason="flagged", why=why))
    back = next((i for i in reversed(items) if i.outcome == "regressed"), None)
    if back is not None and now - back.occurred_at <= timedelta(days=rules.stepped_back_days):
        to = back.stage_after_name or back.stage_after
        found.append(
            Attention(
                reason="stepped_back",
                why=f"stepped back to {to} {_days(now - back.occurred_at)} ago",
            )
        )
    if last is not None and status != "flagged":
        exits = [c for c in last.criteria if c.role == "exit"]
        open_ = [c for c in exits if c.status != "passed"]
        if open_ and all(c.kind == "clinician_approval" for c in open_):
            found.append(
                Attention(
                    reason="awaiting_approval",
                    why="every other exit criterion is met; only your approval is missing",
                )
            )
    pains = [s.pain_during for s in timeline.sessions[-3:]]
    if len(pains) == 3 and pains[0] < pains[1] < pains[2]:
        found.append(
            Attention(
                reason="pain_rising",
                why=f"pain during the last three sessions rose: {pains[0]}, {pains[1]}, then {pains[2]} out of 10",
            )
        )
    minimum = _minimum_days(timeline)
    days_at = (last_event - since).total_seconds() / 86400
    if minimum and days_at > rules.held_long_factor * minimum:
        found.append(
            Attention(
                reason="held_long",
                why=f"{round(days_at)} days at this stage; its minimum is {minimum:g}",
            )
        )
    if now - last_event >= timedelta(days=rules.inactive_days):
        found.append(
            Attention(
                reason="inactive",
                why=f"no session or check-in for {_days(now - last_event)}",
            )
        )
    return tuple(found)


def _minimum_days(timeline: Timeline) -> float | None:
    last = next((i for i in reversed(timeline.items) if i.criteria), None)
    for c in last.criteria if last else ():
        if c.kind == "days_at_stage" and isinstance(c.threshold, int | float):
            return float(c.threshold)
    return None


def clinic_overview(clinic_id: str, rows: Sequence[ClientRow]) -> ClinicOverview:
    return ClinicOverview(clinic_id=clinic_id, clients=tuple(rows))
