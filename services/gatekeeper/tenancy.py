"""Which clinic an inbound entry speaks for, and refusals that are security events.

The clinic of an event is established by the stream it arrived on (each clinic
may only XADD to its own `rehabgate:inbound:<clinic_id>`, enforced by its Redis
ACL user), never trusted from the payload (OWASP multi-tenant: "never trust
tenant ids sent by the client"). So an entry is refused, before anything is
written, when its payload names another clinic than its stream, when it names a
client that belongs to another clinic, when its signature does not hold, or
when it arrives on the shared development stream while clinics are configured.
Each such refusal is dead-lettered like any other and also recorded on
`rehabgate:security-events` with ids and the reason only.

With no clinics configured (development) the shared `rehabgate:inbound` stream
is read as before and the payload's clinic is believed: a trusted network only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic_core import from_json

from rehabgate.schemas.streams import INBOUND, clinic_inbound_stream
from rehabgate.services.common.settings import GatekeeperSettings

from .signatures import is_signed, verify

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Source:
    """One inbound stream and what an entry on it may claim."""

    stream: str
    #: The clinic this stream belongs to; None on the shared development stream.
    clinic_id: str | None = None
    require_signature: bool = False
    keys: tuple[bytes, ...] = field(default=(), repr=False)
    tolerance_s: float = 300.0
    #: The shared stream while clinics are configured: nobody may publish there.
    closed: bool = False


#: The development default: the shared stream, payload clinic believed.
SHARED = Source(INBOUND)


def sources(settings: GatekeeperSettings) -> list[Source]:
    """The inbound streams to consume: the shared stream alone without clinics; with
    clinics, each clinic's stream plus the shared one, closed (so an entry left
    there by a misconfigured publisher is refused visibly, not ignored)."""
    if not settings.clinics:
        return [SHARED]
    return [
        *(
            Source(
                clinic_inbound_stream(clinic_id),
                clinic_id,
                config.require_signature,
                config.hmac_keys(),
                settings.signature_tolerance_s,
            )
            for clinic_id, config in sorted(settings.clinics.items())
        ),
        Source(INBOUND, closed=True),
    ]


@dataclass(frozen=True)
class Refusal:
    """Why an entry was refused as a security event, with the ids it claimed."""

    kind: str
    reason: str
    ids: Mapping[str, str] = field(default_factory=dict)


def check_envelope(
    source: Source, fields: Mapping[bytes, bytes], body: bytes, now: float
) -> Refusal | None:
    """Before the payload is even validated: is the stream open, and does the
    signature hold? Required when the clinic says so; checked whenever present and
    the clinic has keys (without keys, as on the development stream, there is
    nothing to check it against and the fields are ignored)."""
    if source.closed:
        return Refusal(
            "closed_stream",
            f"stream closed: clinics are configured, so each publishes to "
            f"{INBOUND}:<clinic_id> and nothing is accepted on {INBOUND}",
            claimed_ids(body),
        )
    if source.require_signature or (is_signed(fields) and source.keys):
        problem = verify(fields, body, source.keys, now, source.tolerance_s)
        if problem is not None:
            return Refusal("signature", problem, claimed_ids(body))
    return None


def check_clinic(source: Source, clinic_id: str, ids: Mapping[str, str]) -> Refusal | None:
    """The payload's clinic must be the stream's clinic."""
    if source.clinic_id is None or clinic_id == source.clinic_id:
        return None
    return Refusal(
        "clinic_mismatch",
        f"clinic mismatch: the event names clinic {clinic_id} but arrived on the stream "
        f"of clinic {source.clinic_id}",
        ids,
    )


def check_owner(owner: str | None, clinic_id: str, ids: Mapping[str, str]) -> Refusal | None:
    """A client belongs to the clinic that first wrote it, for good."""
    if owner is None or owner == clinic_id:
        return None
    return foreign_client(ids)


def foreign_client(ids: Mapping[str, str]) -> Refusal:
    return Refusal("foreign_client", "client belongs to another clinic", ids)


def claimed_ids(body: bytes) -> dict[str, str]:
    """The ids a payload claims, for a security event; only values that look like ids
    (so nothing an attacker writes there is copied as free text)."""
    try:
        document = from_json(body)  # a depth limit, never a RecursionError
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    found = {}
    for name in ("event_id", "client_id", "clinic_id", "event_type"):
        value = document.get(name)
        if isinstance(value, str) and _ID.match(value):
            found["claimed_clinic_id" if name == "clinic_id" else name] = value
    return found
