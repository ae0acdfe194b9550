"""The outbox in Redis. Keys (all in the partition's hash tag `{pN}`):

- `delivery-ledger` (hash): decision id -> message id. A decision is taken once;
  redelivering it finds it here and changes nothing.
- `outbox:msg:<id>` (hash): `state` (queued | sending), `client`, `clinic`, `n` and
  the decisions `d1`..`dn` as JSON. The message id is its first decision's id.
- `outbox:due` (sorted set): queued message id -> when it is due.
- `outbox:sending` (sorted set): claimed message id -> when its claim lapses.
- `outbox:open` (hash): client id -> the newest queued message, for coalescing.

`schedule_step.lua` takes a decision in; `deliver_step.lua` claims a message and
finishes it (e-mail, webhook: the send happens between the two) or completes it
in one atomic step (the client-messages stream). Times are epoch seconds. Each
script takes a whole batch (up to `STEP_CHUNK`) in one call, one atomic step per
decision or message: per-call overhead, not Redis, is what a notifier spends
most on. The messages a batch creates are known as stored without reading them
back (`Scheduled.created`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar, cast

from rehabgate.schemas.outbound import DeliveryReceipt, ProgressionEvaluated
from rehabgate.schemas.streams import (
    PREFIX,
    client_messages_stream,
    partition_tag,
    physio_alerts_stream,
    receipts_stream,
)
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.notifier.coalescing import OpenMessage, Placement

HERE = Path(__file__).parent
#: Decisions (messages) per script call: a batch's steps in few calls, without
#: holding Redis for long when the batch size is large.
STEP_CHUNK = 200
Step = Literal["claim", "finish", "complete"]


def ledger_key(partition: int) -> str:
    return f"{PREFIX}:{partition_tag(partition)}:delivery-ledger"


@dataclass(frozen=True, slots=True)
class Entry:
    """One decision to take in, with where it goes and its physio alert (if flagged)."""

    decision: ProgressionEvaluated
    raw: str
    placement: Placement
    alert: str | None = None
    #: The W3C traceparent the decision's stream entry carried ("" for none).
    traceparent: str = ""


@dataclass(frozen=True, slots=True)
class Queued:
    """A message as read from the outbox."""

    message_id: str
    state: str
    client_id: str
    clinic_id: str
    decisions: tuple[ProgressionEvaluated, ...]
    due: float | None  # epoch seconds, as stored: compared exactly, no rounding
    lease_end: float | None
    #: Per decision, the traceparent its stream entry carried ("" for none).
    traceparents: tuple[str, ...] = ()

    def ready(self, now: datetime) -> bool:
        """Due and queued, or claimed by a sender whose lease has lapsed."""
        if self.state == "queued":
            return self.due is None or self.due <= now.timestamp()
        return self.lease_end is None or self.lease_end <= now.timestamp()


@dataclass(frozen=True, slots=True)
class Scheduled:
    """What `Outbox.schedule` did: per entry (fate, message id), and the messages it
    created whose every decision came with it, as stored (no need to read them back)."""

    fates: list[tuple[str, str]]
    created: dict[str, Queued]


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """The outbox's key names in one partition (see the module docstring)."""

    partition: int

    @property
    def _tag(self) -> str:
        return f"{PREFIX}:{partition_tag(self.partition)}"

    @property
    def ledger(self) -> str:
        return ledger_key(self.partition)

    @property
    def due(self) -> str:
        return f"{self._tag}:outbox:due"

    @property
    def sending(self) -> str:
        return f"{self._tag}:outbox:sending"

    @property
    def open(self) -> str:
        return f"{self._tag}:outbox:open"

    def message(self, message_id: str) -> str:
        return f"{self._tag}:outbox:msg:{message_id}"


class Outbox:
    def __init__(self, redis: RedisClient, partition: int) -> None:
        self.redis = redis
        self.partition = partition
        self.keys = OutboxKeys(partition)
        self.ledger = self.keys.ledger
        self.due_key = self.keys.due
        self.sending_key = self.keys.sending
        self.open_key = self.keys.open
        self._schedule = redis.register_script((HERE / "schedule_step.lua").read_text())
        self._deliver = redis.register_script((HERE / "deliver_step.lua").read_text())

    def message_key(self, message_id: str) -> str:
        return self.keys.message(message_id)

    async def open_messages(self, client_ids: Sequence[str]) -> dict[str, OpenMessage | None]:
        """Each client's newest queued message (for coalescing), in one round trip."""
        ids = list(dict.fromkeys(client_ids))
        raw = cast(list[bytes | None], await self.redis.hmget(self.open_key, ids) if ids else [])
        return {c: OpenMessage.from_pointer(r.decode()) if r else None
                for c, r in zip(ids, raw, strict=True)}  # fmt: skip

    async def schedule(self, entries: Sequence[Entry]) -> Scheduled:
        """Take decisions in, in order, in one script call (per `STEP_CHUNK`
        decisions): per entry (fate, message id) with fate 'joined', 'created' or
        'duplicate'."""
        results: list[tuple[str, str, int]] = []
        for chunk in _chunks(entries):
            keys = [self.ledger, self.due_key, self.open_key, physio_alerts_stream(self.partition)]
            args: list[str | float] = []
            for e in chunk:
                did, join = str(e.decision.decision_id), e.placement.join or ""
                keys += [self.message_key(join or did), self.message_key(did)]
                args += [did, join, e.decision.client_id, e.decision.clinic_id, e.raw,
                         e.placement.own.due.timestamp(), e.placement.own.pointer(),
                         e.alert or "", e.traceparent]  # fmt: skip
            replies = await self._schedule(keys=keys, args=args)
            results += [(f.decode(), m.decode(), int(n)) for f, m, n in replies]
        return Scheduled([(f, m) for f, m, _ in results], _created(entries, results))

    async def ready_ids(self, now: datetime, limit: int) -> list[str]:
        """Messages due by `now`, and claimed ones whose lease lapsed (a crashed sender)."""
        at = now.timestamp()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.due_key, "-inf", at, start=0, num=limit)
        pipe.zrangebyscore(self.sending_key, "-inf", at, start=0, num=limit)
        due, lapsed = await pipe.execute()
        return list(dict.fromkeys(m.decode() for m in [*due, *lapsed]))

    async def read(self, message_ids: Sequence[str]) -> list[Queued]:
        """The messages still in the outbox (sent ones are skipped), in one round trip."""
        if not message_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for mid in message_ids:
            pipe.hgetall(self.message_key(mid))
            pipe.zscore(self.due_key, mid)
            pipe.zscore(self.sending_key, mid)
        results = await pipe.execute()
        found = []
        for i, mid in enumerate(message_ids):
            fields, due, lease = results[3 * i : 3 * i + 3]
            if not fields:
                continue
            text = {k.decode(): v for k, v in fields.items()}
            n = int(text["n"])
            found.append(Queued(
                message_id=mid,
                state=text["state"].decode(),
                client_id=text["client"].decode(),
                clinic_id=text["clinic"].decode(),
                decisions=tuple(ProgressionEvaluated.model_validate_json(text[f"d{k}"])
                                for k in range(1, n + 1)),
                due=due,
                lease_end=lease,
                traceparents=tuple(text.get(f"t{k}", b"").decode() for k in range(1, n + 1)),
            ))  # fmt: skip
        return found

    async def defer(self, message_id: str, until: datetime) -> None:
        """Move a queued message's due time (quiet hours began after it was queued);
        no effect on a message claimed meanwhile."""
        await self.redis.zadd(self.due_key, {message_id: until.timestamp()}, xx=True)

    async def step(
        self,
        step: Step,
        message: Queued,
        now: datetime,
        lease_end: datetime | None = None,
        message_json: str = "",
        receipts: Sequence[DeliveryReceipt] = (),
    ) -> str:
        """Run one deliver_step.lua step for `message` (see the script for results)."""
        [result] = await self._steps(step, [(message, message_json, receipts)], now, lease_end)
        return result

    async def complete_all(
        self,
        items: Sequence[tuple[Queued, str, Sequence[DeliveryReceipt]]],
        now: datetime,
        traceparents: Mapping[str, str] | None = None,
    ) -> list[str]:
        """'complete' steps for many messages `(message, message JSON, receipts)` in
        one script call (per `STEP_CHUNK` messages); `traceparents`: message id ->
        the trace context its stream entry carries."""
        return await self._steps("complete", items, now, traceparents=traceparents or {})

    async def _steps(
        self,
        step: Step,
        items: Sequence[tuple[Queued, str, Sequence[DeliveryReceipt]]],
        now: datetime,
        lease_end: datetime | None = None,
        traceparents: Mapping[str, str] | None = None,
    ) -> list[str]:
        traceparent = (traceparents or {}).get
        results: list[str] = []
        for chunk in _chunks(items):
            keys = [self.due_key, self.sending_key, self.open_key,
                    client_messages_stream(self.partition), receipts_stream(self.partition)]  # fmt: skip
            args: list[str | float | int] = [step, now.timestamp(), (lease_end or now).timestamp()]
            for message, message_json, receipts in chunk:
                keys.append(self.message_key(message.message_id))
                args += [message.message_id, len(message.decisions), message_json,
                         traceparent(message.message_id, ""), len(receipts),
                         *(r.model_dump_json() for r in receipts)]  # fmt: skip
            results += [r.decode() for r in await self._deliver(keys=keys, args=args)]
        return results


T = TypeVar("T")


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    """A script call per `STEP_CHUNK` items: Redis runs nothing else during one.
    (Not pipelined: a pipeline with a script first asks SCRIPT EXISTS, one more
    round trip; a direct call loads the script only when the server lacks it.)"""
    return [items[i : i + STEP_CHUNK] for i in range(0, len(items), STEP_CHUNK)]


def _created(
    entries: Sequence[Entry], results: Sequence[tuple[str, str, int]]
) -> dict[str, Queued]:
    """The messages these steps created, when their decisions are exactly these
    steps' own: places 1..k in order. Another notifier may have joined one of them
    between two of our script calls (a batch over `STEP_CHUNK`); such a message is
    left out (read back before sending), and the deliver step's decision count
    check stops any send of a stale copy."""
    members: dict[str, list[tuple[int, Entry]]] = {}
    for entry, (fate, message_id, n) in zip(entries, results, strict=True):
        if fate == "created":
            members[message_id] = [(n, entry)]
        elif fate == "joined" and message_id in members:
            members[message_id].append((n, entry))
    created = {}
    for message_id, placed in members.items():
        if [n for n, _ in placed] != list(range(1, len(placed) + 1)):
            continue
        first = placed[0][1]
        created[message_id] = Queued(
            message_id=message_id,
            state="queued",
            client_id=first.decision.client_id,
            clinic_id=first.decision.clinic_id,
            decisions=tuple(e.decision for _, e in placed),
            due=first.placement.own.due.timestamp(),
            lease_end=None,
            traceparents=tuple(e.traceparent for _, e in placed),
        )
    return created
