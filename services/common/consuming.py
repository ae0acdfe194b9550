"""Helpers shared by both services' stream consumers: consumer groups, the
delivery cap of the claimers, pruning of consumers nobody runs any more, and
`ClientOrder`: one client's entries applied in stream order across consumers."""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog
from faststream.redis.annotations import RedisBatchStreamMessage
from redis.exceptions import ResponseError

from rehabgate.schemas.streams import EVENT_FIELD

from .connections import RedisClient
from .dead_letters import DeadLetters, Letter
from .heartbeat import Liveness, now_ms
from .metrics import ServiceMetrics

#: A stream entry as read: its id as text and its fields.
RawEntry = tuple[str, Mapping[bytes, bytes]]

#: Consumers idle this long with nothing pending belong to processes long gone.
PRUNE_IDLE_MS = 3_600_000

# Check and delete in one script: XGROUP DELCONSUMER drops the consumer's pending
# entries from the PEL, so a consumer that took an entry meanwhile must be kept.
_PRUNE = """
local deleted = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    table.insert(deleted, f['name'])
  end
end
return deleted
"""


async def ensure_group(redis: RedisClient, stream: str, group: str) -> None:
    """Create the consumer group at id 0 (so entries written before the first
    start are not skipped), creating the stream if needed; idempotent. After a
    group was lost (FLUSHALL, XGROUP DESTROY) this re-reads every entry still in
    the stream; the processed markers and the delivery ledger turn them into
    recognised duplicates."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def raw_batch_parser(
    msg: Mapping[str, Any], original_parser: Callable[[Mapping[str, Any]], Awaitable[Any]]
) -> Any:
    """Broker-level FastStream parser for our batch handlers, which read raw entries.

    FastStream decodes every entry's fields as a message body before a handler
    runs; one entry with invalid UTF-8 makes that raise, the handler never sees
    the batch, and the batch (and each reclaim of it) stays pending forever. So
    the default parser sees the batch with empty field maps, and the message
    keeps the raw entries for the handler to decode, and dead-letter, itself.
    """
    data = msg.get("data")
    if msg.get("type") != "bstream" or not isinstance(data, list):
        return await original_parser(msg)
    message = await original_parser({**msg, "data": [{} for _ in data]})
    message.raw_message = msg
    return message


def raw_entries(msg: RedisBatchStreamMessage) -> list[RawEntry]:
    """The entries of a batch message with their stream ids."""
    raw = msg.raw_message
    return [
        (entry_id.decode(), fields)
        for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)
    ]


async def delivery_counts(
    redis: RedisClient, stream: str, group: str, entry_ids: Sequence[str]
) -> dict[str, int]:
    """How often each pending entry has been delivered (XPENDING), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for entry_id in entry_ids:
        pipe.xpending_range(stream, group, min=entry_id, max=entry_id, count=1)
    replies = await pipe.execute()
    return {
        entry_id: int(rows[0]["times_delivered"]) if rows else 1
        for entry_id, rows in zip(entry_ids, replies, strict=True)
    }


async def dead_letter_exhausted(
    redis: RedisClient,
    entries: Sequence[RawEntry],
    *,
    stream: str,
    group: str,
    dead_letter_stream: str,
    max_deliveries: int,
    log: structlog.typing.FilteringBoundLogger,
    metrics: ServiceMetrics,
) -> list[RawEntry]:
    """The claimers' delivery cap, so nothing is retried forever: entries delivered
    more than `max_deliveries` times are moved to `dead_letter_stream` (reason and
    raw payload) and acknowledged; the others are returned to be handled again.

    The dead letter is written before the XACK (a round trip of its own: on a
    cluster the two streams may live on different nodes), once per entry: a crash
    in between redelivers it, and the second attempt finds the first letter's
    marker (common/dead_letters.py). `metrics` counts them
    (rehabgate_dead_letters_total)."""
    counts = await delivery_counts(redis, stream, group, [entry_id for entry_id, _ in entries])
    exhausted = [(i, f) for i, f in entries if counts[i] > max_deliveries]
    if exhausted:
        reason = f"gave up after {max_deliveries} deliveries"
        letters = DeadLetters(redis, dead_letter_stream)
        for entry_id, fields in exhausted:
            await letters.write(
                Letter(stream, entry_id, reason, fields.get(EVENT_FIELD.encode(), b""))
            )
        await redis.xack(stream, group, *(entry_id for entry_id, _ in exhausted))
        metrics.dead_lettered(reason for _ in exhausted)
        for entry_id, _ in exhausted:
            log.warning(
                "entry_dead_lettered", stream=stream, entry_id=entry_id,
                deliveries=counts[entry_id], reason=reason,
            )  # fmt: skip
    return [(i, f) for i, f in entries if counts[i] <= max_deliveries]


async def prune_idle_consumers(
    redis: RedisClient, stream: str, group: str, min_idle_ms: int = PRUNE_IDLE_MS
) -> list[str]:
    """Delete the group's consumers that own no pending entry and have been idle
    longer than `min_idle_ms` (every restart adds a hostname-pid consumer; XINFO
    and health views fill up with dead ones). One with pending entries is always
    kept: deleting it would drop its entries from the PEL, where the claimer
    finds them. Returns the deleted names."""
    deleted = await redis.eval(_PRUNE, 1, stream, group, min_idle_ms)
    return [name.decode() for name in cast(list[bytes], deleted)]


# --------------------------------------------------------------------------- client order

#: The consumer that holds entries deliberately left pending (a gatekeeper's events
#: waiting for their client's enrolment). No process runs under this name, so the
#: next consumer that needs such an entry before a later one of its client takes it.
PARKED = "parked"
#: A service's claimer subscriber is its consumer name with this suffix.
CLAIMER_SUFFIX = "-claimer"
#: Entries handed to this process's own consumers, not being handled, and idle this
#: long, are a failed batch's: the next batch (or the sweep) takes them again.
OWN_LEFTOVER_MS = 1_000
_PENDING_PAGE = 1_000
_LIVENESS_TTL_S = 0.5


def entry_client(fields: Mapping[bytes, bytes]) -> str | None:
    """The `client_id` of an inbound entry's event; None when it has none (a
    malformed entry, which orders nothing: it is dead-lettered)."""
    try:
        event = json.loads(fields[EVENT_FIELD.encode()])
        client = event.get("client_id") if isinstance(event, dict) else None
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return client if isinstance(client, str) else None


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Gate:
    """A batch sorted by `ClientOrder.sort`: what may be applied now (in stream
    order), what must wait for an earlier entry of its client that another live
    consumer is handling, and which of the ready entries were taken over from
    other consumers (not part of the batch as delivered)."""

    ready: list[RawEntry]
    waiting: list[RawEntry]
    taken: list[RawEntry]


@dataclass
class _Pending:
    entry_id: str
    consumer: str
    idle_ms: int


class ClientOrder:
    """Applies one client's entries of a stream in stream order, across every
    consumer of the group, crashes and restarts included.

    Why it holds: a consumer group hands out entries in stream order, and an entry
    stays in the group's pending list (PEL) until it is acknowledged. So when a
    consumer holds entry E of client C, every earlier entry of C was handed out
    before E and is either acknowledged (applied, or dead-lettered) or pending.
    `sort` reads the PEL below the batch's entries and, for each client of the
    batch, finds its earlier entries still pending elsewhere:

    - pending at a consumer that is gone (its heartbeat stale or removed, or the
      entry was handed to an earlier process of the same name), at `PARKED`, at
      one of this process's own consumers that no handler here holds, or idle
      longer than the claim idle time: taken over (XCLAIM) and applied first, in
      stream order, with the batch;
    - pending at a live consumer that is handling it: the client's entries wait
      (the caller acknowledges what it applied and asks again shortly).

    A consumer wrongly judged gone (a long pause) costs duplicate work only: the
    commit steps are idempotent and versioned, and the taker applies the taken
    entries before the client's later ones. `in_flight` holds the ids this
    process's handlers hold (shared by its subscribers and its sweep).
    """

    def __init__(
        self,
        redis: RedisClient,
        stream: str,
        group: str,
        *,
        service: str,
        consumer: str,
        client_of: Callable[[Mapping[bytes, bytes]], str | None] = entry_client,
        dead_after_ms: int,
        claim_idle_ms: int,
        cache_size: int = 200_000,
    ) -> None:
        self.redis, self.stream, self.group = redis, stream, group
        self.service, self.consumer = service, consumer
        self.own = {consumer, consumer + CLAIMER_SUFFIX}
        self.client_of = client_of
        self.dead_after_ms, self.claim_idle_ms = dead_after_ms, claim_idle_ms
        self.in_flight: Counter[str] = Counter()
        self._clients: dict[str, str | None] = {}
        self._cache_size = cache_size
        self._liveness: tuple[float, Liveness] | None = None
        #: When this process started: what its names held before is a dead process's.
        self.started_ms = now_ms()

    def hold(self, entry_ids: Iterable[str]) -> None:
        """Mark `entry_ids` as handled by this process (holds nest)."""
        self.in_flight.update(entry_ids)

    def release(self, entry_ids: Iterable[str]) -> None:
        for entry_id in entry_ids:
            self.in_flight[entry_id] -= 1
            if self.in_flight[entry_id] <= 0:
                del self.in_flight[entry_id]

    @contextlib.contextmanager
    def holding(self, entry_ids: Iterable[str]) -> Iterator[None]:
        """Hold `entry_ids` while the block runs."""
        ids = list(entry_ids)
        self.hold(ids)
        try:
            yield
        finally:
            self.release(ids)

    def _remember(self, entry_id: str, fields: Mapping[bytes, bytes]) -> str | None:
        client = self._clients.get(entry_id)
        if client is None and entry_id not in self._clients:
            if len(self._clients) >= self._cache_size:  # drop the oldest half
                for old in list(self._clients)[: self._cache_size // 2]:
                    del self._clients[old]
            client = self._clients[entry_id] = self.client_of(fields)
        return client

    async def _pending_below(self, last: str) -> list[_Pending]:
        """Every entry of the group's PEL up to `last`, oldest first."""
        rows: list[_Pending] = []
        start = "-"
        while True:
            page = await self.redis.xpending_range(
                self.stream, self.group, min=start, max=last, count=_PENDING_PAGE
            )
            rows += [
                _Pending(cast(bytes, row["message_id"]).decode(),
                         cast(bytes, row["consumer"]).decode(), int(row["time_since_delivered"]))
                for row in page
            ]  # fmt: skip
            if len(page) < _PENDING_PAGE:
                return rows
            start = "(" + rows[-1].entry_id

    async def _clients_of(self, entry_ids: Sequence[str]) -> dict[str, str | None]:
        unknown = [i for i in entry_ids if i not in self._clients]
        if unknown:
            pipe = self.redis.pipeline(transaction=False)
            for entry_id in unknown:
                pipe.xrange(self.stream, min=entry_id, max=entry_id, count=1)
            for entry_id, found in zip(unknown, await pipe.execute(), strict=True):
                if found:
                    self._remember(entry_id, found[0][1])
                else:  # gone from the stream (trimmed, deleted): orders nothing
                    self._clients[entry_id] = None
        return {i: self._clients.get(i) for i in entry_ids}

    async def _live(self) -> Liveness:
        now = time.monotonic()
        if self._liveness is None or now - self._liveness[0] > _LIVENESS_TTL_S:
            self._liveness = (now, await Liveness.read(self.redis, self.service))
        return self._liveness[1]

    async def _takeable(self, row: _Pending, sweeping: bool = False) -> bool:
        """Whether another entry's pending `row` is nobody's work right now. This
        process's own entries that no handler here holds: at once when an earlier
        process of the same name was handed them; else (a failed batch) after
        `OWN_LEFTOVER_MS` when a later entry of the client needs them, and after the
        claim idle time for the sweep (as the claimer would)."""
        if row.consumer in self.own:
            if row.entry_id in self.in_flight:
                return False
            if now_ms() - row.idle_ms < self.started_ms:
                return True
            return row.idle_ms >= (self.claim_idle_ms if sweeping else OWN_LEFTOVER_MS)
        if row.consumer == PARKED or row.idle_ms >= self.claim_idle_ms:
            return True
        base = row.consumer.removesuffix(CLAIMER_SUFFIX)
        return (await self._live()).gone(base, row.idle_ms, self.dead_after_ms)

    async def take(self, entry_ids: Sequence[str], *, park: bool = False) -> list[RawEntry]:
        """XCLAIM `entry_ids` for this process's consumer (or, `park`, for PARKED,
        without counting a delivery); returns the claimed entries still in the stream."""
        if not entry_ids:
            return []
        owner = PARKED if park else self.consumer
        claimed = await self.redis.xclaim(
            self.stream, self.group, owner, 0, list(entry_ids), justid=park
        )
        if park:
            return []
        return [(i.decode(), f) for i, f in cast(list[tuple[bytes, dict[bytes, bytes]]], claimed)
                if f is not None]  # fmt: skip

    async def sort(self, entries: Sequence[RawEntry]) -> Gate:
        """Split a batch (and the earlier entries of its clients that nobody is
        handling, taken over here) into ready and waiting; see the class."""
        batch = sorted(entries, key=lambda e: _id_key(e[0]))
        if not batch:
            return Gate([], [], [])
        own = {entry_id for entry_id, _ in batch}
        last_of: dict[str, tuple[int, int]] = {}
        for entry_id, fields in batch:
            if (client := self._remember(entry_id, fields)) is not None:
                last_of[client] = max(last_of.get(client, (0, 0)), _id_key(entry_id))
        if not last_of:
            return Gate(batch, [], [])
        rows = [r for r in await self._pending_below(batch[-1][0]) if r.entry_id not in own]
        clients = await self._clients_of([r.entry_id for r in rows])
        take: list[str] = []
        first_wait: dict[str, tuple[int, int]] = {}
        for row in rows:
            client = clients[row.entry_id]
            key = _id_key(row.entry_id)
            if client is None or client not in last_of or key > last_of[client]:
                continue
            if client in first_wait or not await self._takeable(row):
                first_wait.setdefault(client, key)
            else:
                take.append(row.entry_id)
        taken = await self.take(take)
        for entry_id, fields in taken:
            self._remember(entry_id, fields)
        ready: list[RawEntry] = []
        waiting: list[RawEntry] = []
        for entry in sorted([*batch, *taken], key=lambda e: _id_key(e[0])):
            wait_from = first_wait.get(self._clients.get(entry[0]) or "")
            blocked = wait_from is not None and _id_key(entry[0]) > wait_from
            (waiting if blocked else ready).append(entry)
        taken_ids = {i for i, _ in taken}
        return Gate(ready, waiting, [e for e in ready if e[0] in taken_ids])

    async def orphans(self) -> list[RawEntry]:
        """Take over every pending entry that is nobody's work (see `_takeable`),
        except PARKED ones (they wait for the claimer or a later entry of their
        client): a gone consumer's entries are applied without waiting for the
        claim idle time or for a later entry of the same client."""
        rows = await self._pending_below("+")
        take = [r.entry_id for r in rows
                if r.consumer != PARKED and await self._takeable(r, sweeping=True)]  # fmt: skip
        taken = await self.take(take)
        for entry_id, fields in taken:
            self._remember(entry_id, fields)
        return taken
