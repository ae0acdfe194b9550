"""Per-clinic API keys, stored hashed.

A key is `rgk_<key id>_<secret>`: the key id (public, 16 hex digits) finds the
record, the secret (32 random bytes, URL-safe base64) is only ever stored as its
SHA-256. A random secret of 256 bits needs no slow hash: nothing can be guessed
from its digest. Records live in one Redis hash, `rehabgate:ingest:api-keys`
(key id -> JSON `{"clinic_id", "sha256", "issued_at"}`); revoking a key deletes
its record, and the next request with it is refused.

Every failure (no header, not a bearer key, malformed, unknown id, wrong secret,
revoked, a clinic no longer configured) is the same `None` to the caller, which
answers all of them alike; the digest is compared in constant time, and computed
for unknown ids too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rehabgate.schemas.streams import PREFIX

#: Hash: key id -> record JSON.
KEYS_HASH = f"{PREFIX}:ingest:api-keys"  # acl.INGEST_KEYS
_KEY = re.compile(r"^rgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_DUMMY = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    clinic_id: str
    #: The whole key, shown once; only its hash is stored.
    key: str


def new_key(clinic_id: str) -> tuple[IssuedKey, str]:
    """A fresh key and the record to store for it."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = json.dumps(
        {
            "clinic_id": clinic_id,
            "sha256": _digest(secret),
            "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    return IssuedKey(key_id, clinic_id, f"rgk_{key_id}_{secret}"), record


def split_key(authorization: str | None) -> tuple[str, str] | None:
    """(key id, secret) of an `Authorization: Bearer <key>` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    found = _KEY.match(value.strip()) if scheme.lower() == "bearer" else None
    return (found[1], found[2]) if found else None


def clinic_of(record: bytes | str | None, secret: str) -> str | None:
    """The clinic a key belongs to when `secret` matches its stored record, else None."""
    try:
        stored: dict[str, Any] = json.loads(record) if record else {}
    except ValueError:
        stored = {}
    digest = stored.get("sha256") if isinstance(stored.get("sha256"), str) else None
    matched = hmac.compare_digest(_digest(secret), digest or _DUMMY)
    clinic = stored.get("clinic_id")
    return clinic if matched and digest and isinstance(clinic, str) else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
