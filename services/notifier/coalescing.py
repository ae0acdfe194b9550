"""Which message each decision goes into, and when that message is due. Pure.

A client who logs a session and a check-in a minute apart, or whose physio
regresses and then approves, should get one message, not three. Decisions of
one client whose event times lie within `window` of the first decision of a
message join that message. The window is measured in *event* time, so a
backlog (a notifier that was down for a day, a replayed demo) still gives one
message per real-world moment rather than one for the whole day.

A new message is due when its window has closed: at its first decision's event
time plus the window, but never before `now` (old events are not waited for)
and never later than `now + window` (a clock ahead of ours is not trusted). A
message due in the client's quiet hours is due when they end; several messages
held to the same quiet-hours end are one message.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rehabgate.schemas.inbound import QuietHours

from .quiet_hours import quiet_until


@dataclass(frozen=True, slots=True)
class OpenMessage:
    """A client's newest message still waiting to be sent (its id is its first
    decision's id)."""

    message_id: str
    start: datetime
    due: datetime
    held_for_quiet_hours: bool

    def pointer(self) -> str:
        """How the outbox stores it: `id|start|due|quiet` (epoch seconds)."""
        quiet = "1" if self.held_for_quiet_hours else "0"
        return f"{self.message_id}|{self.start.timestamp()}|{self.due.timestamp()}|{quiet}"

    @classmethod
    def from_pointer(cls, raw: str) -> OpenMessage:
        message_id, start, due, quiet = raw.split("|")
        return cls(
            message_id,
            datetime.fromtimestamp(float(start), UTC),
            datetime.fromtimestamp(float(due), UTC),
            quiet == "1",
        )


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one decision goes: `join` (an open message) or its own new message
    `own` (used also when the message to join was sent meanwhile)."""

    decision_id: str
    join: str | None
    own: OpenMessage


def place(
    decisions: Sequence[tuple[str, datetime]],
    open_message: OpenMessage | None,
    quiet: QuietHours | None,
    now: datetime,
    window: timedelta,
    catch_up: Collection[str] = frozenset(),
) -> list[Placement]:
    """Placements for one client's decisions `(decision id, event time)`, in the
    order the gatekeeper made them. A `catch_up` decision (a correction a late event
    made) joins the message before it whatever its event time, so one late sync is
    one message that says what changed."""
    current = open_message
    placements = []
    for decision_id, at in decisions:
        natural = min(max(at + window, now), now + window)
        held_until = quiet_until(quiet, natural)
        own = OpenMessage(decision_id, at, held_until or natural, held_until is not None)
        joins = current is not None and (
            decision_id in catch_up
            or abs(at - current.start) <= window
            or (
                own.held_for_quiet_hours
                and current.held_for_quiet_hours
                and abs(current.due - own.due) < timedelta(seconds=1)
            )
        )
        if joins and current is not None:
            placements.append(Placement(decision_id, current.message_id, own))
        else:
            placements.append(Placement(decision_id, None, own))
            current = own
    return placements
