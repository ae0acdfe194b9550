"""Redis adapter of the gatekeeper's client store (client_store.py, the port):
batch state reads and atomic commit steps.

A batch costs two pipelined round trips: one to read every client's state and
processed markers (one read-only script call per partition), one to run every
event's commit script. Each commit script call is atomic on its own, so
per-event atomicity holds while the batch stays fast.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError
from redis.typing import EncodableT, FieldT

from rehabgate.schemas.streams import INBOUND, INBOUND_DEAD_LETTER, SECURITY_EVENTS
from rehabgate.services.common.connections import ClusterClient, RedisClient
from rehabgate.services.common.dead_letters import RAW_KEPT_BYTES, DeadLetters, Letter
from rehabgate.services.common.keys import ClientKeys

from .audit.codec import decode_entry, encode_entry
from .client_store import (
    GENESIS,
    Commit,
    CommitResult,
    DeadLetter,
    RecordedHistory,
    Snapshot,
    StepFailed,
    chain,
    history_of,
    unpack_checkpoint,
)
from .domain.history import (
    ProgressEvent,
    UnreadableState,
    day_number,
    decode_state,
)

__all__ = [
    "GENESIS",
    "Commit",
    "DeadLetter",
    "RecordedHistory",
    "RedisClientStore",
    "Snapshot",
    "chain",
    "events_in_audit",
    "history_in_audit",
]

#: A script argument as the store passes it.
ScriptArg = str | int | bytes


def history_in_audit(entries: Iterable[Mapping[bytes, bytes]]) -> RecordedHistory:
    """A client's recorded history from its audit stream's entries (compressed)."""
    return history_of(json.loads(decode_entry(fields[b"entry"])) for fields in entries)


def events_in_audit(entries: Iterable[Mapping[bytes, bytes]]) -> tuple[ProgressEvent, ...]:
    """The progress events of a client's audit entries (each applied event is in its
    entry exactly as decided), once each, in audit order."""
    return history_in_audit(entries).events


class RedisClientStore:
    def __init__(
        self, redis: RedisClient, partitions: int, raw_kept: int = RAW_KEPT_BYTES
    ) -> None:
        self.redis = redis
        self.partitions = partitions
        here = Path(__file__).parent
        self._load = redis.register_script((here / "load_step.lua").read_text())
        self._commit = redis.register_script((here / "commit_step.lua").read_text())
        self._contact = redis.register_script((here / "contact_step.lua").read_text())
        self._dead_letters = DeadLetters(redis, INBOUND_DEAD_LETTER, raw_kept)

    def keys(self, client_id: str) -> ClientKeys:
        return ClientKeys.of(client_id, self.partitions)

    async def load(self, wanted: Mapping[str, Sequence[str]]) -> dict[str, Snapshot]:
        """State, version, chain head and which of `event_ids` were already applied,
        for each client id in `wanted` (client id -> event ids), in one round trip:
        one script call per partition (three commands per client, pipelined, cost
        more in redis-py than everything else a batch reads)."""
        by_partition: dict[int, list[tuple[ClientKeys, Sequence[str]]]] = defaultdict(list)
        for client_id, event_ids in wanted.items():
            keys = self.keys(client_id)
            by_partition[keys.partition].append((keys, event_ids))
        replies = await self._run(
            self._load,
            [
                (
                    [
                        k
                        for keys, _ in clients
                        for k in (keys.state, keys.processed, keys.owner, keys.digests)
                    ],
                    [a for _, ids in clients for a in (str(len(ids)), *ids)],
                )
                for clients in by_partition.values()
            ],
        )
        snapshots = {}
        for clients, reply in zip(by_partition.values(), replies, strict=True):
            for (keys, event_ids), (raw_state, version, head, owner, flags, digests) in zip(
                clients, reply, strict=True
            ):
                state, unreadable = None, None
                if raw_state:
                    try:
                        state = decode_state(raw_state)
                    except UnreadableState:
                        unreadable = "the client's stored state cannot be read"
                snapshots[keys.client_id] = Snapshot(
                    stored=raw_state if state is not None else None,
                    keys=keys,
                    state=state,
                    version=int(version or 0),
                    audit_head=head.decode() if head else GENESIS,
                    processed={e for e, seen in zip(event_ids, flags, strict=True) if seen},
                    digests={e: d.decode() for e, d in zip(event_ids, digests, strict=True) if d},
                    owner=owner.decode() if owner else (state.clinic_id if state else None),
                    unreadable=unreadable,
                )
        return snapshots

    async def commit(self, commits: Sequence[Commit]) -> list[CommitResult | StepFailed]:
        """Each commit's result, in order; a step that failed with an error of its own
        (not the server's state: see `transient`) is returned as StepFailed, so it
        fails alone."""
        if not commits:
            return []
        calls: list[tuple[list[str], list[ScriptArg]]] = [
            (
                [
                    c.keys.state,
                    c.keys.processed,
                    c.keys.audit,
                    c.keys.evaluated,
                    c.keys.owner,
                    c.keys.digests,
                    c.keys.checkpoints,
                ],
                [
                    c.event_id,
                    c.expected_version,
                    c.previous_hash,
                    c.state,
                    encode_entry(c.audit_entry),
                    c.audit_hash,
                    c.clinic_id,
                    c.digest,
                    "" if c.checkpoint is None else c.checkpoint[0],
                    b"" if c.checkpoint is None else c.checkpoint[1],
                    "" if c.stale_after is None else c.stale_after,
                    len(c.decisions),
                    *c.decisions,
                    *c.decision_fields,
                ],
            )
            for c in commits
        ]
        replies = await self._run(self._commit, calls, own_errors=True)
        return [
            StepFailed(str(r)) if isinstance(r, ResponseError) else r.decode() for r in replies
        ]

    async def _run(
        self,
        script: AsyncScript,
        calls: Sequence[tuple[Sequence[str], Sequence[ScriptArg]]],
        own_errors: bool = False,
    ) -> list[Any]:
        """Run `script` once per (keys, args) call, in order, in one round trip per
        server; its replies in the same order.

        The calls are packed by hiredis (C) and written straight to a pooled
        connection: redis-py's async pipeline packs every argument in Python, checks
        SCRIPT EXISTS in an extra round trip and wraps every reply in several
        coroutines: a seventh of the gatekeeper's CPU time per event. On a cluster
        the calls are grouped by the node that owns their keys (every call's keys
        share one slot) and each group is packed the same way, through a plain
        client of that node (connections.py); the groups run concurrently, and the
        calls of one client stay in order on one connection.

        An error reply raises (the batch stays pending) when it is transient or
        `own_errors` is false; otherwise it is returned in its call's place."""
        if isinstance(self.redis, Redis):
            replies = await _run_packed(self.redis, script, calls)
        elif isinstance(self.redis, ClusterClient):
            replies = await self._run_on_nodes(self.redis, script, calls)
        else:  # a cluster client built elsewhere: one call at a time, in order
            replies = [await script(keys=k, args=a, client=self.redis) for k, a in calls]
        for reply in replies:
            if isinstance(reply, ResponseError) and (not own_errors or transient(reply)):
                raise reply  # the batch stays pending; the steps are idempotent
        return replies

    async def _run_on_nodes(
        self,
        cluster: ClusterClient,
        script: AsyncScript,
        calls: Sequence[tuple[Sequence[str], Sequence[ScriptArg]]],
    ) -> list[Any]:
        by_node: dict[str, list[int]] = defaultdict(list)
        nodes = {}
        for i, (keys, _) in enumerate(calls):
            node = cluster.get_node_from_key(keys[0])
            if node is None:  # pragma: no cover - only asked for replicas
                raise RedisClusterException(f"no node serves the slot of {keys[0]}")
            by_node[node.name].append(i)
            nodes[node.name] = node
        groups = await asyncio.gather(
            *(
                _run_packed(cluster.node_client(nodes[name]), script, [calls[i] for i in idx])
                for name, idx in by_node.items()
            )
        )
        replies: list[Any] = [None] * len(calls)
        for idx, group in zip(by_node.values(), groups, strict=True):
            for i, reply in zip(idx, group, strict=True):
                replies[i] = reply
        for i, reply in enumerate(replies):
            if isinstance(reply, ResponseError) and str(reply).startswith(_REDIRECTS):
                # The slot moved (resharding, failover): the cluster client follows
                # the redirect and refreshes its slot map for the next batch. Redone
                # in order; a step of a client built on a missed one answers
                # 'conflict' (its version check) and is decided again.
                keys, args = calls[i]
                replies[i] = await script(keys=keys, args=args, client=cluster)
        return replies

    async def load_history(
        self, client_id: str, before: datetime | None = None
    ) -> RecordedHistory:
        """The progress events applied to a client and the decisions on record, for
        deciding a late arrival at `before`: from the newest checkpoint of a day no
        later than its day (the audit entries from the checkpoint's position on), or
        the whole audit trail when there is none."""
        keys = self.keys(client_id)
        base, position = None, b"-"
        if before is not None:
            days = [int(d) for d in cast(list[bytes], await self.redis.hkeys(keys.checkpoints))]
            usable = [d for d in days if d <= day_number(before)]
            if usable:
                raw = cast(bytes | None, await self.redis.hget(keys.checkpoints, str(max(usable))))
                if raw is not None:  # (None: dropped meanwhile; read it all)
                    at, _, state = raw.partition(b" ")
                    with suppress(UnreadableState, zlib.error):  # (else: read it all)
                        base, position = unpack_checkpoint(state), at
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self.redis.xrange(keys.audit, min=position),
        )
        history = history_in_audit(fields for _, fields in entries)
        if base is None:
            return history
        return RecordedHistory(history.events, history.decisions, base)

    async def store_contact(
        self, client_id: str, clinic_id: str, event_id: str, contact_json: str, digest: str
    ) -> str:
        """'applied', 'duplicate', 'reused' (the id came before with other content) or
        'foreign' (the client belongs to another clinic)."""
        keys = self.keys(client_id)
        result: bytes = await self._contact(
            keys=[keys.processed, keys.contact, keys.owner, keys.digests],
            args=[event_id, contact_json, clinic_id, digest],
        )
        return result.decode()

    async def dead_letter(self, letters: Iterable[DeadLetter], stream: str = INBOUND) -> None:
        """Move refused entries to the dead-letter stream (reason, a bounded prefix of
        the raw payload, its size and hash), once per entry, and record those that
        are security events (ids and reason, no payload). The caller acks them with
        the rest of the batch."""
        at = datetime.now(UTC)
        for letter in letters:
            written = await self._dead_letters.write(
                Letter(stream, letter.entry_id, letter.reason, letter.raw), at
            )
            if written and letter.security is not None:
                event: dict[FieldT, EncodableT] = {k: v for k, v in letter.security.items()}
                event["at"] = at.isoformat()
                await self.redis.xadd(SECURITY_EVENTS, event)


def transient(error: ResponseError) -> bool:
    """Whether an error reply is the server's state (retry the batch later) rather
    than the step's own failure (dead-letter that entry alone)."""
    return str(error).startswith(_TRANSIENT) or isinstance(error, NoScriptError)


#: Error replies of a server that is loading, busy, out of memory, read-only or
#: moving slots: nothing about the entry itself.
_TRANSIENT = ("LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "NOREPLICAS", "MISCONF")

#: Error replies that mean "this node does not serve that slot (now)".
_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


async def _run_packed(
    server: Redis, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[ScriptArg]]]
) -> list[Any]:
    """Every call as one pre-packed EVALSHA on one pooled connection of `server`;
    the replies in order, an error reply in its call's place."""
    packed = [
        # (hiredis's stub types the command as a tuple of one item)
        hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))  # type: ignore[arg-type]
        for keys, args in calls
    ]
    pool = server.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        # A lost connection: all are sent again (redis-py's retry policy), as every
        # step is idempotent (an applied one answers 'duplicate').
        replies: list[Any] = await connection.retry.call_with_retry(
            lambda: _exchange(connection, packed), lambda _: connection.disconnect()
        )
        if replies and all(isinstance(r, NoScriptError) for r in replies):
            # The server lost its script cache (a restart): nothing ran; load it, redo.
            await server.script_load(script.script)
            replies = await _exchange(connection, packed)
    except BaseException:
        # Cancelled or failed mid-exchange: replies may be left unread on it, so
        # it must not serve the next caller as it is.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    return replies


async def _exchange(connection: AbstractConnection, packed: list[bytes]) -> list[Any]:
    """Send pre-packed commands and read one reply each; an error reply is returned in
    its place, so every reply is read and the connection stays in step."""
    await connection.send_packed_command(packed)
    replies: list[Any] = []
    for _ in packed:
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)
    return replies
