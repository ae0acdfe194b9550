"""Quiet hours: when a message may not be sent, in the client's own timezone.

Pure: the moment to judge comes in as a parameter (no clock), so the rules are
tested with explicit times, including windows across midnight and DST changes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rehabgate.schemas.inbound import QuietHours


def quiet_until(quiet: QuietHours | None, at: datetime) -> datetime | None:
    """When `at` (aware) falls in the quiet window, the UTC moment the window ends;
    otherwise None. A window whose start equals its end is no window at all. An
    unknown timezone name counts as UTC (the contact event only checks its length)."""
    if quiet is None or quiet.start == quiet.end:
        return None
    zone = _zone(quiet.timezone)
    local = at.astimezone(zone)
    start, end = _clock(quiet.start), _clock(quiet.end)
    now = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:  # e.g. 13:00-15:00, within one day
        ends = _at(today, end, zone) if start <= now < end else None
    elif now >= start:  # e.g. 21:00-07:00, evening part: ends tomorrow morning
        ends = _at(today + timedelta(days=1), end, zone)
    elif now < end:  # early-morning part: ends this morning
        ends = _at(today, end, zone)
    else:
        ends = None
    if ends is None:
        return None
    # A local end that does not exist (a DST gap) resolves forwards; never before `at`.
    return max(ends, at).astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _clock(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone)
