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

#: Clinics `XADD` their events here.
INBOUND: Final = f"{PREFIX}:inbound"
#: Inbound entries the gatekeeper could not accept, with the reason and raw payload.
INBOUND_DEAD_LETTER: Final = f"{PREFIX}:inbound:dead-letter"

#: Consumer groups.
GATEKEEPER_GROUP: Final = "gatekeeper"
NOTIFIER_GROUP: Final = "notifier"


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


def evaluated_dead_letter_stream(partition: int) -> str:
    """Decisions the notifier could not turn into a message, with the reason."""
    return f"{PREFIX}:{partition_tag(partition)}:evaluated:dead-letter"


def partition_of(client_id: str, partitions: int) -> int:
    """Which partition a client's keys and decisions live in (stable across processes)."""
    return zlib.crc32(client_id.encode()) % partitions
