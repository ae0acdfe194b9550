"""Redis key names of one client. All carry the client's partition hash tag, so a
gatekeeper step (state + processed marker + audit + decision stream) is one slot."""

from __future__ import annotations

from dataclasses import dataclass

from rehabgate.schemas.streams import PREFIX, evaluated_stream, partition_of, partition_tag


@dataclass(frozen=True, slots=True)
class ClientKeys:
    client_id: str
    partition: int

    @classmethod
    def of(cls, client_id: str, partitions: int) -> ClientKeys:
        return cls(client_id, partition_of(client_id, partitions))

    @property
    def _base(self) -> str:
        return f"{PREFIX}:{partition_tag(self.partition)}:client:{self.client_id}"

    @property
    def state(self) -> str:
        """Hash: `state` (JSON), `version`, `audit_head`."""
        return self._base

    @property
    def processed(self) -> str:
        """Set of applied event ids: the idempotency marker."""
        return f"{self._base}:processed"

    @property
    def digests(self) -> str:
        """Hash: applied event id -> digest of its content (an id reused with other
        content is refused, not taken for a duplicate)."""
        return f"{self._base}:digests"

    @property
    def audit(self) -> str:
        """Append-only, hash-chained audit stream."""
        return f"{self._base}:audit"

    @property
    def checkpoints(self) -> str:
        """Hash: day number -> the client's state before that day, with the audit
        position from which later events are found (late events replay from it)."""
        return f"{self._base}:checkpoints"

    @property
    def contact(self) -> str:
        """Contact details, kept apart from health data so they can be erased alone."""
        return f"{self._base}:contact"

    @property
    def owner(self) -> str:
        """The clinic the client belongs to (set by its first write, never changed)."""
        return f"{self._base}:owner"

    @property
    def evaluated(self) -> str:
        return evaluated_stream(self.partition)
