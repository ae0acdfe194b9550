"""A clinic at a glance: where each client stands, who is flagged, who has been
held longest. Pure: built from each client's state and timeline.

"Held longest" is measured in event time (from entering the current stage to the
client's latest event), like every decision, so the page does not depend on the
clock of the machine that renders it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from rehabgate.services.gatekeeper.domain.history import ClientState

from .history import Timeline


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


def client_row(state: ClientState, timeline: Timeline, chain_ok: bool) -> ClientRow:
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
    )


def clinic_overview(clinic_id: str, rows: Sequence[ClientRow]) -> ClinicOverview:
    return ClinicOverview(clinic_id=clinic_id, clients=tuple(rows))
