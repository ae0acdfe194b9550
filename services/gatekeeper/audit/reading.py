"""Reading audit trails from Redis: the only part of the audit package that does I/O.

A client's state hash (chain head, version, state) and its audit stream are read in
one MULTI/EXEC, so a verification never compares entries with a head from another
moment. Both share the client's hash tag, so this works on Redis Cluster too.
The CLI runs these coroutines with `asyncio.run`, so there is one implementation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from redis.exceptions import ResponseError

from rehabgate.schemas.streams import PREFIX
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.domain.history import (
    ClientState,
    UnreadableState,
    decode_state,
)

from .codec import decode_entry
from .verify import Head, StoredEntry

_CLIENT_KEY = re.compile(
    rf"^{re.escape(PREFIX)}:\{{p(?P<partition>\d+)\}}:client:"
    r"(?P<client>[A-Za-z0-9][A-Za-z0-9_.-]{1,63})(?::(?P<suffix>audit|processed|contact))?$"
)


@dataclass(frozen=True)
class ClientAudit:
    """One client's state (None when it has none) and audit entries, read together."""

    keys: ClientKeys
    state: ClientState | None
    head: Head
    entries: tuple[StoredEntry, ...]

    @property
    def client_id(self) -> str:
        return self.keys.client_id

    @property
    def exists(self) -> bool:
        return self.state is not None or bool(self.entries)


class UnreadableClient(Exception):
    """A client whose keys hold what no rehabgate version writes (a key of another
    type, a state that is not a state): corruption, for an operator to look at.
    Readers report it for that client and go on with the others."""

    def __init__(self, client_id: str, reason: str) -> None:
        super().__init__(f"client {client_id}: {reason}")
        self.client_id, self.reason = client_id, reason


async def read_client(redis: RedisClient, keys: ClientKeys) -> ClientAudit:
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hmget(keys.state, ["state", "version", "audit_head"])
            pipe.xrange(keys.audit)
            (raw_state, version, head), rows = await pipe.execute()
    except ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        raise UnreadableClient(keys.client_id, "a key of the wrong type") from None
    try:
        state = decode_state(raw_state) if raw_state else None
    except UnreadableState:
        raise UnreadableClient(keys.client_id, "a state that does not validate") from None
    entries = tuple(
        StoredEntry(
            entry_id.decode(),
            decode_entry(fields.get(b"entry", b"")),
            fields.get(b"hash", b"").decode(errors="replace"),
        )
        for entry_id, fields in rows
    )
    present = raw_state is not None or version is not None or head is not None
    return ClientAudit(
        keys=keys,
        state=state,
        head=Head(head.decode() if head else None, int(version or 0))
        if present
        else Head(None, 0),
        entries=entries,
    )


async def client_keys(redis: RedisClient) -> list[ClientKeys]:
    """Every client that has a state or an audit stream (SCAN, never KEYS), sorted."""
    found: dict[str, ClientKeys] = {}
    async for raw in redis.scan_iter(match=f"{PREFIX}:*:client:*", count=1000):
        match = _CLIENT_KEY.match(raw.decode(errors="replace"))
        if match and match["suffix"] in (None, "audit"):
            client = match["client"]
            found[client] = ClientKeys(client, int(match["partition"]))
    return [found[c] for c in sorted(found)]
