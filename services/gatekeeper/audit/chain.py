"""The audit chain's format, in one place: how an entry links to its predecessor.

An entry is one JSON object whose first member is `prev_hash`, the hash of the
entry before it (GENESIS for a client's first), and its hash is
sha256(prev_hash + the entry's exact JSON text). The writer (`chain`, used by the
gatekeeper's use case) and the reader (`entry_hash`, used by verify.py) share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

#: The `prev_hash` of a client's first entry.
GENESIS = "0" * 64


def entry_hash(prev_hash: str, raw: str) -> str:
    """The hash of an entry whose JSON is `raw`, linked to `prev_hash`."""
    return hashlib.sha256((prev_hash + raw).encode()).hexdigest()


def chain(previous_hash: str, parts: Mapping[str, str]) -> tuple[str, str]:
    """Assemble an audit entry linked to its predecessor; returns (json, hash).

    `parts` maps each key to its value already serialised as JSON: the event and
    the decision are serialised once, by pydantic's Rust serialiser, and the same
    text goes to the audit entry and the decision stream (re-encoding them here
    cost more than the rest of the step). The hash covers this exact JSON text,
    which the store keeps compressed (codec.py).
    """
    members = [f'"prev_hash":{json.dumps(previous_hash)}']
    members += [f"{json.dumps(key)}:{value}" for key, value in parts.items()]
    body = "{" + ",".join(members) + "}"
    return body, entry_hash(previous_hash, body)
