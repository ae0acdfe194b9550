"""Stream names and the entry field: the part of the contract a plain `XADD` needs.

Every stream the gatekeeper writes in its atomic step carries the hash tag of a
partition (`{p0}` ...), the same tag as the client keys of that step, so one
step touches one slot and runs unchanged on Redis Cluster. The inbound stream
is the one clinics write to and is not partitioned.
"""

from __future__ import annotations

import zlib
from typing import Final

PREFIX: Final = "rehabgate"

#: Field of a stream entry that holds the event as a JSON document.
EVENT_FIELD: Final = "event"
#: Optional W3C Trace Context fields of a stream entry, beside `event`: a clinic
#: that adds `traceparent` to its XADD finds its trace continued to the message.
TRACEPARENT: Final = "traceparent"
TRACE_FIELDS: Final = (TRACEPARENT, "tracestate")

#: Clinics `XADD` their events here.
INBOUND: Final = f"{PREFIX}:inbound"
#: Inbound entries the gatekeeper could not accept, with the reason and raw payload.
INBOUND_DEAD_LETTER: Final = f"{PREFIX}:inbound:dead-letter"
#: Refusals that look like an attack (wrong clinic, foreign client, bad signature):
#: ids and the reason only, never a payload.
SECURITY_EVENTS: Final = f"{PREFIX}:security-events"
#: Clinic ids that cannot name a clinic stream (they are taken by other streams).
RESERVED_CLINIC_IDS: Final = frozenset({"dead-letter"})

#: Consumer groups.
GATEKEEPER_GROUP: Final = "gatekeeper"
NOTIFIER_GROUP: Final = "notifier"


def clinic_inbound_stream(clinic_id: str) -> str:
    """The stream one clinic publishes to when clinics are configured (tenants): the
    clinic of an event is the clinic of the stream it arrived on."""
    if clinic_id in RESERVED_CLINIC_IDS:
        raise ValueError(f"{clinic_id!r} cannot be a clinic id")
    return f"{INBOUND}:{clinic_id}"


def partition_tag(partition: int) -> str:
    """The hash tag shared by every key of one partition."""
    return f"{{p{partition}}}"


def evaluated_stream(partition: int) -> str:
    """`progression.evaluated` decisions of one partition."""
    return f"{PREFIX}:{partition_tag(partition)}:evaluated"


def client_messages_stream(partition: int) -> str:
    """Client messages (the default delivery channel) of one partition."""
    return f"{PREFIX}:{partition_tag(partition)}:client-messages"


def receipts_stream(partition: int) -> str:
    """`message.delivered` / `message.failed` receipts of one partition."""
    return f"{PREFIX}:{partition_tag(partition)}:receipts"


def physio_alerts_stream(partition: int) -> str:
    """`physio.alert` events of one partition: flagged clients, for the clinic's physios."""
    return f"{PREFIX}:{partition_tag(partition)}:physio-alerts"


def evaluated_dead_letter_stream(partition: int) -> str:
    """Decisions the notifier could not turn into a message, with the reason."""
    return f"{PREFIX}:{partition_tag(partition)}:evaluated:dead-letter"


def erasures_stream(partition: int) -> str:
    """The hash-chained record of client erasures in one partition."""
    return f"{PREFIX}:{partition_tag(partition)}:erasures"


def partition_of(client_id: str, partitions: int) -> int:
    """Which partition a client's keys and decisions live in (stable across processes)."""
    return zlib.crc32(client_id.encode()) % partitions
