"""Verify a signed inbound entry (schemas/signing.py says how it is signed).

Pure: the clock is a parameter. Every signature in the entry is compared with
every valid key's expected signature by `hmac.compare_digest`, always all of
them, so neither which key matched nor where a mismatch starts shows in the
timing. The timestamp must lie within `tolerance_s` of now in either direction
(a future timestamp is as suspect as an old one); together with the processed
marker (the same event id is a duplicate) that bounds replays: an old entry
re-sent is refused, a recent one is recognised.

A refusal's reason names what failed, never a signature or a key.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from rehabgate.schemas.signing import (
    SIGNATURE_FIELD,
    TIMESTAMP_FIELD,
    VERSION,
    SigningError,
    event_id_of,
    signature,
)

#: Longest signature field accepted: a few signatures, never an unbounded list.
MAX_SIGNATURE_FIELD = 1024


def is_signed(fields: Mapping[bytes, bytes]) -> bool:
    return SIGNATURE_FIELD.encode() in fields or TIMESTAMP_FIELD.encode() in fields


def verify(
    fields: Mapping[bytes, bytes],
    body: bytes,
    keys: Sequence[bytes],
    now: float,
    tolerance_s: float,
) -> str | None:
    """None when the entry carries a valid signature by one of `keys`, else why not."""
    raw_signatures = fields.get(SIGNATURE_FIELD.encode())
    raw_timestamp = fields.get(TIMESTAMP_FIELD.encode())
    if raw_signatures is None or raw_timestamp is None:
        return "signature missing: the entry needs the fields signature and timestamp"
    if not keys:
        return "signature not verifiable: no key is configured for this clinic"
    try:
        timestamp = int(raw_timestamp.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return "signature timestamp invalid: expected unix seconds"
    if abs(now - timestamp) > tolerance_s:
        return (
            f"signature timestamp outside the tolerance of {tolerance_s:g}s "
            f"({'in the future' if timestamp > now else 'expired'})"
        )
    try:
        event_id = event_id_of(body)
    except SigningError:
        return "signature invalid: the signed event has no event_id"
    if len(raw_signatures) > MAX_SIGNATURE_FIELD:
        return "signature invalid: too long"
    given = [s.encode() for s in raw_signatures.decode("ascii", errors="replace").split()]
    if not any(s.startswith(f"{VERSION},".encode()) for s in given):
        return f"signature invalid: no {VERSION} signature"
    expected = [signature(key, event_id, timestamp, body).encode() for key in keys]
    matched = False
    for candidate in given:
        for wanted in expected:
            matched |= hmac.compare_digest(candidate, wanted)
    return None if matched else "signature invalid: no signature matches a key of this clinic"
