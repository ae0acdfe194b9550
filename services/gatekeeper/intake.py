"""Intake of one raw stream entry: an inbound event, or the reason it cannot be used.

Everything here runs before any state is read, and every refusal is the entry's
own: size first (nothing over the cap is parsed), then the stream's envelope
(closed stream, signature), then the JSON, parsed in strict mode (the types the
published JSON Schema states: "3" is not an integer, `true` is not 1), then the
event's clinic, then its time. The time window needs the server's clock, which
is why it is checked here and not in the pure domain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from rehabgate.schemas.inbound import ClientEnrolled, InboundEvent, parse_inbound
from rehabgate.schemas.streams import EVENT_FIELD

from .client_store import DeadLetter
from .tenancy import SHARED, Refusal, Source, check_clinic, check_envelope

#: No event may say it happened before this (documented in the README's contract).
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Limits:
    """What intake accepts (settings: max_event_bytes, max_future_s)."""

    #: An entry's fields together, in bytes; larger ones are refused unparsed.
    max_entry_bytes: int = 65_536
    #: How far after the server's clock an `occurred_at` may lie (clock skew).
    max_future: timedelta = timedelta(hours=24)


def read_entry(
    entry_id: str,
    fields: Mapping[bytes, bytes],
    source: Source = SHARED,
    now: float = 0.0,
    limits: Limits = Limits(),
) -> InboundEvent | DeadLetter:
    """Decode one entry, or say exactly why it cannot be used. `source`: the stream it
    came from (its clinic, signature policy); `now`: unix time (signatures, window)."""
    size = sum(len(k) + len(v) for k, v in fields.items())
    raw = fields.get(EVENT_FIELD.encode())
    if size > limits.max_entry_bytes:
        return DeadLetter(
            entry_id,
            f"entry too large: {size} bytes, over the limit of {limits.max_entry_bytes} "
            f"bytes (it was not parsed)",
            raw if raw is not None else b"",
        )
    if raw is None:
        names = sorted(k.decode(errors="replace") for k in fields)
        return DeadLetter(
            entry_id,
            f"missing field {EVENT_FIELD!r} (the entry has fields {', '.join(names) or 'none'})",
            json.dumps(
                {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
            ).encode(),
        )
    if (denied := check_envelope(source, fields, raw, now)) is not None:
        return refused(entry_id, source, denied, raw)
    try:
        event = parse_inbound(raw)
    except ValidationError as exc:
        return DeadLetter(entry_id, schema_problem(exc), raw)
    if (denied := check_clinic(source, event.clinic_id, event_ids(event))) is not None:
        return refused(entry_id, source, denied, raw)
    if (problem := implausible_time(event, now, limits)) is not None:
        return DeadLetter(entry_id, problem, raw)
    return event


def schema_problem(exc: ValidationError) -> str:
    """A dead-letter reason naming every field that is wrong and how."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        # jiter's own message: invalid UTF-8, a syntax error, or nesting too deep.
        return f"malformed JSON: {errors[0]['msg'].removeprefix('Invalid JSON: ')}"
    return "schema violation: " + "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(event)'}: {e['msg']}" for e in errors
    )


def implausible_time(event: InboundEvent, now: float, limits: Limits) -> str | None:
    """Why the event's time cannot be right, or None. Before the documented floor,
    or further in the future than clock skew explains, is refused at intake, so no
    date arithmetic downstream meets year 1 or 9999."""
    at = event.occurred_at
    if at < EARLIEST_OCCURRED_AT:
        return (
            f"occurred_at {at.isoformat()} is before {EARLIEST_OCCURRED_AT.date().isoformat()}, "
            f"the earliest time rehabgate accepts"
        )
    latest = datetime.fromtimestamp(now, UTC) + limits.max_future
    if at > latest:
        return (
            f"occurred_at {at.isoformat()} is more than {_hours(limits.max_future)} after "
            f"the server's clock ({datetime.fromtimestamp(now, UTC).isoformat(timespec='seconds')})"
        )
    if isinstance(event, ClientEnrolled):
        start = event.start_date
        if not EARLIEST_OCCURRED_AT.date() <= start <= latest.date() + timedelta(days=366):
            return (
                f"start_date {start.isoformat()} is outside "
                f"{EARLIEST_OCCURRED_AT.date().isoformat()} to a year after today"
            )
    return None


def content_digest(event: InboundEvent) -> str:
    """What an event id stands for: the event's canonical JSON (so key order and
    whitespace do not matter), hashed. A reused id with another digest is refused."""
    return hashlib.sha256(event.model_dump_json().encode()).hexdigest()[:32]


def refused(entry_id: str, source: Source, refusal: Refusal, raw: bytes) -> DeadLetter:
    """A dead letter that is also a security event (ids and reason only)."""
    security = {
        "kind": refusal.kind,
        "reason": refusal.reason,
        "stream": source.stream,
        "entry_id": entry_id,
        **({"clinic_id": source.clinic_id} if source.clinic_id else {}),
        **refusal.ids,
    }
    return DeadLetter(entry_id, refusal.reason, raw, security)


def event_ids(event: InboundEvent) -> dict[str, str]:
    """The ids a security event or log line may carry about an event."""
    return {
        "event_id": str(event.event_id),
        "client_id": event.client_id,
        "claimed_clinic_id": event.clinic_id,
        "event_type": event.event_type,
    }


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hour" + ("" if hours == 1 else "s")
