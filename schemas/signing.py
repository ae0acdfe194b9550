"""Signed inbound events: what a clinic publisher adds to each stream entry.

Standard Webhooks style, so any language can do it with its HMAC library: the
signature is HMAC-SHA256, keyed with the clinic's secret, over
`<event_id>.<timestamp>.<body>`, where `event_id` is the event's own `event_id`,
`timestamp` the unix seconds of signing and `body` the exact bytes of the field
`event`. The entry carries it as `signature` = `v1,<base64>` (several,
space-separated, while keys rotate) and `timestamp`.

The event id is signed separately from the body on purpose: it is the
idempotency key, so a signed event replayed under the same id is a recognised
duplicate, and one re-sent under a new id no longer matches its signature.

Nothing here imports the services: publishers install the schemas only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from pydantic_core import from_json

from .streams import EVENT_FIELD

SIGNATURE_FIELD: Final = "signature"
TIMESTAMP_FIELD: Final = "timestamp"
VERSION: Final = "v1"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - a format prefix, not a secret

#: The publisher SDK's signer hook: (stream, payload bytes) -> extra entry fields.
Signer = Callable[[str, bytes], Mapping[str, str | bytes]]


class SigningError(ValueError):
    """The event or the key cannot be signed (no event_id, a key that is not base64)."""


def decode_key(secret: str | bytes) -> bytes:
    """The HMAC key from its configured form: base64 text, optionally prefixed
    `whsec_` (as Standard Webhooks writes secrets); raw bytes are used as they are."""
    if isinstance(secret, bytes):
        return secret
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise SigningError("a signing key must be base64 (optionally prefixed whsec_)") from exc
    if len(key) < 16:
        raise SigningError("a signing key must hold at least 16 bytes")
    return key


def generate_key() -> str:
    """A fresh secret for a clinic: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def signed_content(event_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{event_id}.{timestamp}.".encode() + body


def signature(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    digest = hmac.new(key, signed_content(event_id, timestamp, body), hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def event_id_of(body: bytes | str) -> str:
    """The `event_id` inside an event's JSON: what the signature binds it to."""
    try:
        # pydantic-core's parser: a depth limit instead of Python's RecursionError.
        document = from_json(body)
    except ValueError as exc:
        raise SigningError("the event is not JSON") from exc
    event_id = document.get("event_id") if isinstance(document, dict) else None
    if not isinstance(event_id, str) or not event_id:
        raise SigningError("the event has no event_id")
    return event_id


def sign(
    event_json: str | bytes, key: str | bytes | Iterable[str | bytes], timestamp: int
) -> dict[str, str]:
    """The entry fields of a signed event: `event`, `signature` and `timestamp`.

    `key`: the clinic's secret (base64 text as configured, or raw bytes); during a
    rotation pass both keys, old and new, and the entry carries both signatures."""
    body = event_json.encode() if isinstance(event_json, str) else event_json
    keys = [key] if isinstance(key, str | bytes) else list(key)
    event_id = event_id_of(body)
    signatures = " ".join(signature(decode_key(k), event_id, timestamp, body) for k in keys)
    return {
        EVENT_FIELD: body.decode(),
        SIGNATURE_FIELD: signatures,
        TIMESTAMP_FIELD: str(timestamp),
    }


def signer(
    key: str | bytes | Iterable[str | bytes], clock: Callable[[], float] = time.time
) -> Signer:
    """A signer for the publisher SDK: `Publisher(url, stream=..., signer=signer(key))`."""
    keys = [key] if isinstance(key, str | bytes) else list(key)

    def fields(stream: str, payload: bytes) -> dict[str, str]:
        signed = sign(payload, keys, int(clock()))
        return {SIGNATURE_FIELD: signed[SIGNATURE_FIELD], TIMESTAMP_FIELD: signed[TIMESTAMP_FIELD]}

    return fields
