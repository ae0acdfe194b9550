"""Quiet hours and coalescing, with explicit times (both are pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rehabgate.schemas.inbound import QuietHours
from rehabgate.services.notifier.coalescing import OpenMessage, place
from rehabgate.services.notifier.quiet_hours import quiet_until

NIGHT_BERLIN = QuietHours(start="21:00", end="07:30", timezone="Europe/Berlin")
WINDOW = timedelta(minutes=5)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_evening_in_quiet_hours_waits_for_the_next_morning_local_time() -> None:
    # 21:30 UTC on 20 Nov is 22:30 in Berlin (CET, +1): quiet until 07:30 CET = 06:30 UTC.
    assert quiet_until(NIGHT_BERLIN, utc(2026, 11, 20, 21, 30)) == utc(2026, 11, 21, 6, 30)


def test_early_morning_in_quiet_hours_waits_until_this_morning() -> None:
    assert quiet_until(NIGHT_BERLIN, utc(2026, 11, 21, 5, 0)) == utc(2026, 11, 21, 6, 30)


def test_outside_quiet_hours_nothing_waits() -> None:
    assert quiet_until(NIGHT_BERLIN, utc(2026, 11, 20, 12, 0)) is None
    assert (
        quiet_until(NIGHT_BERLIN, utc(2026, 11, 21, 6, 30)) is None
    )  # the end itself is not quiet
    assert quiet_until(None, utc(2026, 11, 20, 23, 0)) is None


def test_a_daytime_window_and_an_empty_window() -> None:
    nap = QuietHours(start="13:00", end="15:00", timezone="UTC")
    assert quiet_until(nap, utc(2026, 11, 20, 14, 0)) == utc(2026, 11, 20, 15, 0)
    assert quiet_until(nap, utc(2026, 11, 20, 15, 0)) is None
    assert quiet_until(QuietHours(start="08:00", end="08:00"), utc(2026, 11, 20, 8, 0)) is None


def test_quiet_hours_follow_daylight_saving_time() -> None:
    # 29 Mar 2026: Berlin moves from +1 to +2 at 02:00, so 07:30 local is 05:30 UTC.
    assert quiet_until(NIGHT_BERLIN, utc(2026, 3, 28, 22, 0)) == utc(2026, 3, 29, 5, 30)
    # New York (-4 in summer): 23:00 local is 03:00 UTC; quiet until 07:30 local.
    ny = QuietHours(start="22:00", end="07:30", timezone="America/New_York")
    assert quiet_until(ny, utc(2026, 7, 1, 3, 0)) == utc(2026, 7, 1, 11, 30)


def test_an_unknown_timezone_counts_as_utc() -> None:
    odd = QuietHours(start="22:00", end="06:00", timezone="Mars/Olympus_Mons")
    assert quiet_until(odd, utc(2026, 11, 20, 23, 0)) == utc(2026, 11, 21, 6, 0)


def test_decisions_a_minute_apart_become_one_message_due_when_the_window_closes() -> None:
    now = utc(2026, 11, 20, 10, 0, 30)
    placed = place([("a", utc(2026, 11, 20, 10, 0)), ("b", utc(2026, 11, 20, 10, 1))],
                   None, None, now, WINDOW)  # fmt: skip
    assert [(p.decision_id, p.join) for p in placed] == [("a", None), ("b", "a")]
    assert placed[0].own.due == utc(2026, 11, 20, 10, 5)


def test_decisions_further_apart_than_the_window_are_separate_messages() -> None:
    now = utc(2026, 11, 20, 12, 0)
    placed = place([("a", utc(2026, 11, 20, 10, 0)), ("b", utc(2026, 11, 20, 10, 6))],
                   None, None, now, WINDOW)  # fmt: skip
    assert [p.join for p in placed] == [None, None]
    # Old events are not waited for: both are due now.
    assert [p.own.due for p in placed] == [now, now]


def test_a_decision_joins_the_clients_open_message_from_an_earlier_batch() -> None:
    open_message = OpenMessage("a", utc(2026, 11, 20, 10, 0), utc(2026, 11, 20, 10, 5), False)
    placed = place([("b", utc(2026, 11, 20, 10, 3))], open_message, None,
                   utc(2026, 11, 20, 10, 3), WINDOW)  # fmt: skip
    assert placed[0].join == "a"


def test_an_event_time_ahead_of_our_clock_waits_no_longer_than_the_window() -> None:
    now = utc(2026, 11, 20, 10, 0)
    placed = place([("a", utc(2026, 11, 21, 10, 0))], None, None, now, WINDOW)
    assert placed[0].own.due == now + WINDOW


def test_a_message_due_in_quiet_hours_is_held_and_night_messages_are_one() -> None:
    now = utc(2026, 11, 20, 21, 30)  # 22:30 in Berlin
    placed = place([("a", utc(2026, 11, 20, 21, 30)), ("b", utc(2026, 11, 20, 23, 0))],
                   None, NIGHT_BERLIN, now, WINDOW)  # fmt: skip
    assert placed[0].own.due == utc(2026, 11, 21, 6, 30)
    assert placed[0].own.held_for_quiet_hours
    assert placed[1].join == "a"  # 90 minutes later, but held to the same morning


def test_open_message_pointer_round_trips() -> None:
    message = OpenMessage("a", utc(2026, 11, 20, 10, 0), utc(2026, 11, 21, 6, 30), True)
    assert OpenMessage.from_pointer(message.pointer()) == message


def test_a_late_events_corrections_join_its_message_whatever_their_event_time() -> None:
    """One late sync, one message: the corrections of later decisions it caused are
    days apart in event time but join the late event's own message."""
    now = utc(2026, 11, 25, 9, 0)
    placed = place(
        [("own", utc(2026, 11, 20, 10, 0)), ("fix", utc(2026, 11, 23, 7, 0))],
        None, None, now, WINDOW, catch_up={"fix"},
    )  # fmt: skip

    assert [p.join for p in placed] == [None, "own"]
    assert place([("own", utc(2026, 11, 20, 10, 0)), ("fix", utc(2026, 11, 23, 7, 0))],
                 None, None, now, WINDOW)[1].join is None  # fmt: skip
