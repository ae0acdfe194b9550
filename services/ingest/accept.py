"""From a request body to accepted stream entries, or the reason for each refusal.

The body is one item or a JSON array of up to `max_batch` items. An item is an
inbound event (a JSON object, exactly as on the wire), or, for a signed event, the
entry's fields as the Redis path carries them: `{"event": "<the event JSON as a
string>", "timestamp": <unix seconds>, "signature": "v1,..."}` (the signature is
over the exact bytes of that string, so they must travel as a string).

Each item is checked with the gatekeeper's own intake (`read_entry`: size, signature,
strict JSON and schema, the clinic of the key, a plausible time), so what the edge
accepts the gatekeeper accepts, and what it refuses it refuses for the same reason.
All or nothing: one refused item refuses the request and nothing is written; the
answer names every refused item and why. Accepted items are written by one atomic
script (accept_step.lua): a plain XADD each, in the array's order, and a record per
event id that makes a re-post answer with the same entry id.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from redis.typing import EncodableT

from rehabgate.schemas.inbound import InboundEvent
from rehabgate.schemas.signing import SIGNATURE_FIELD, TIMESTAMP_FIELD
from rehabgate.schemas.streams import EVENT_FIELD, INBOUND, clinic_inbound_stream
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.settings import IngestSettings
from rehabgate.services.gatekeeper.client_store import DeadLetter
from rehabgate.services.gatekeeper.intake import Limits, content_digest, read_entry
from rehabgate.services.gatekeeper.tenancy import Source

_ENTRY_FORM = frozenset({EVENT_FIELD, TIMESTAMP_FIELD, SIGNATURE_FIELD})


class BadBody(ValueError):
    """The body as a whole cannot be used (400), with the reason."""


@dataclass(frozen=True)
class Refused:
    index: int
    reason: str
    event_id: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One item that passed the edge checks, ready to write."""

    index: int
    event: InboundEvent
    raw: bytes
    timestamp: str = ""
    signature: str = ""
    digest: str = field(default="")


@dataclass(frozen=True)
class Accepted:
    index: int
    event_id: str
    entry_id: str
    #: "accepted" (written now) or "duplicate" (the same event was accepted before).
    status: str


def stream_of(settings: IngestSettings, clinic_id: str) -> str | None:
    """Where a clinic's events go: its own stream when clinics are configured (None
    when this clinic is not one of them), else the shared development stream."""
    if not settings.clinics:
        return INBOUND
    return clinic_inbound_stream(clinic_id) if clinic_id in settings.clinics else None


def source_of(settings: IngestSettings, clinic_id: str, stream: str) -> Source:
    config = settings.clinics.get(clinic_id)
    return Source(
        stream,
        clinic_id,  # the key's clinic, also on the shared stream: never the payload's
        config.require_signature if config else False,
        config.hmac_keys() if config else (),
        settings.signature_tolerance_s,
    )


def record_key(stream: str, clinic_id: str, event_id: str) -> str:
    """An accepted event id's record, in its stream's slot."""
    return f"{{{stream}}}:ingested:{clinic_id}:{event_id}"


def parse_body(body: bytes, max_batch: int) -> list[Any]:
    """The items of a body; `BadBody` when it is not JSON, empty, or too long a batch
    (`TooMany`)."""
    try:
        document = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_nan)
    except RecursionError:
        raise BadBody("malformed JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadBody(f"malformed JSON: {str(exc).splitlines()[0]}") from None
    items = document if isinstance(document, list) else [document]
    if not items:
        raise BadBody("no events: the array is empty")
    if len(items) > max_batch:
        raise TooMany(f"too many events: {len(items)}, at most {max_batch} per request")
    return items


class TooMany(BadBody):
    """The batch is over the limit (413)."""


def check(
    items: list[Any], source: Source, limits: Limits, now: float | None = None
) -> tuple[list[Candidate], list[Refused]]:
    """Each item checked as the gatekeeper's intake would (see the module docstring)."""
    at = time.time() if now is None else now
    candidates: list[Candidate] = []
    refused: list[Refused] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(items):
        fields, problem = _entry_fields(item)
        if problem is not None:
            refused.append(Refused(index, problem, _claimed_id(item)))
            continue
        read = read_entry("", fields, source, at, limits)
        if isinstance(read, DeadLetter):
            refused.append(Refused(index, read.reason, _claimed_id(item)))
            continue
        event_id = str(read.event_id)
        digest = content_digest(read)
        if seen.get(event_id, digest) != digest:
            refused.append(Refused(index, _reused(event_id, "earlier in this request"), event_id))
            continue
        seen[event_id] = digest
        candidates.append(
            Candidate(
                index,
                read,
                fields[EVENT_FIELD.encode()],
                fields.get(TIMESTAMP_FIELD.encode(), b"").decode(),
                fields.get(SIGNATURE_FIELD.encode(), b"").decode(),
                digest,
            )
        )
    return candidates, refused


async def write(
    redis: RedisClient,
    script: Any,
    stream: str,
    clinic_id: str,
    candidates: list[Candidate],
    ttl_s: int,
) -> tuple[list[Accepted], list[Refused]]:
    """Write the candidates (see accept_step.lua); an id reused with other content
    refuses the whole request, and nothing is written."""
    unique: dict[str, Candidate] = {}
    for c in candidates:  # the same event twice in one request is written once
        unique.setdefault(str(c.event.event_id), c)
    ordered = list(unique.values())
    keys = [stream, *(record_key(stream, clinic_id, e) for e in unique)]
    args: list[EncodableT] = [ttl_s]
    for c in ordered:
        args += [c.digest, c.event.client_id, c.event.event_type, c.raw, c.timestamp, c.signature]
    replies = cast(list[list[bytes]], await script(keys=keys, args=args, client=redis))
    by_event = {
        str(c.event.event_id): (_text(status), _text(entry))
        for c, (status, entry) in zip(ordered, replies, strict=True)
    }
    reused = [
        Refused(c.index, _reused(str(c.event.event_id), "before"), str(c.event.event_id))
        for c in candidates
        if by_event[str(c.event.event_id)][0] == "reused"
    ]
    if reused:
        return [], reused
    accepted = []
    first: set[str] = set()
    for c in candidates:
        event_id = str(c.event.event_id)
        status, entry = by_event[event_id]
        fresh = status == "new" and event_id not in first
        first.add(event_id)
        accepted.append(Accepted(c.index, event_id, entry, "accepted" if fresh else "duplicate"))
    return accepted, []


def load_script(redis: RedisClient) -> Any:
    return redis.register_script((Path(__file__).parent / "accept_step.lua").read_text())


def _reused(event_id: str, when: str) -> str:
    # The gatekeeper's own words (process.py), so a sender sees one reason either way.
    return (
        f"event id reused with different content: {event_id} was already accepted {when} with "
        f"other content; give a new event a new event_id"
    )


def _entry_fields(item: Any) -> tuple[dict[bytes, bytes], str | None]:
    """The stream entry's fields for one item, or why the item is not one."""
    if not isinstance(item, dict):
        return {}, f"not an event: expected a JSON object, got {type(item).__name__}"
    if item and set(item) <= _ENTRY_FORM and isinstance(item.get(EVENT_FIELD), str):
        fields = {EVENT_FIELD.encode(): item[EVENT_FIELD].encode()}
        for name in (TIMESTAMP_FIELD, SIGNATURE_FIELD):
            value = item.get(name)
            if isinstance(value, bool) or not isinstance(value, int | str | None):
                return {}, f"signed entry: {name} must be a string or an integer"
            if value is not None:
                fields[name.encode()] = str(value).encode()
        return fields, None
    raw = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    return {EVENT_FIELD.encode(): raw.encode()}, None


def _claimed_id(item: Any) -> str | None:
    """The event id an item claims, to name it in a refusal (only a plain string)."""
    if isinstance(item, dict):
        inner = item.get(EVENT_FIELD)
        if isinstance(inner, str):
            try:
                item = json.loads(inner)
            except ValueError:
                return None
        value = item.get("event_id") if isinstance(item, dict) else None
        if isinstance(value, str) and len(value) <= 64:
            return str(value)
    return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        names = [k for k, _ in pairs]
        repeated = sorted({k for k in names if names.count(k) > 1})
        raise ValueError(f"duplicate key {repeated[0]!r}")
    return document


def _no_nan(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
