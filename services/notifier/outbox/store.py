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
in one atomic step (the client-messages stream). Times are epoch seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, cast

from redis.asyncio import Redis

from rehabgate.schemas.outbound import DeliveryReceipt, ProgressionEvaluated
from rehabgate.schemas.streams import (
    PREFIX,
    client_messages_stream,
    partition_tag,
    physio_alerts_stream,
    receipts_stream,
)
from rehabgate.services.notifier.coalescing import OpenMessage, Placement

HERE = Path(__file__).parent
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

    def ready(self, now: datetime) -> bool:
        """Due and queued, or claimed by a sender whose lease has lapsed."""
        if self.state == "queued":
            return self.due is None or self.due <= now.timestamp()
        return self.lease_end is None or self.lease_end <= now.timestamp()


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
    def __init__(self, redis: Redis, partition: int) -> None:
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

    async def schedule(self, entries: Sequence[Entry]) -> list[tuple[str, str]]:
        """Take decisions in, in order, in one pipelined round trip: per entry
        (fate, message id) with fate 'joined', 'created' or 'duplicate'."""
        if not entries:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for e in entries:
            did, join = str(e.decision.decision_id), e.placement.join or ""
            await self._schedule(
                keys=[self.ledger, self.due_key, self.open_key,
                      self.message_key(join or did), self.message_key(did),
                      physio_alerts_stream(self.partition)],
                args=[did, join, e.decision.client_id, e.decision.clinic_id, e.raw,
                      e.placement.own.due.timestamp(), e.placement.own.pointer(), e.alert or ""],
                client=pipe,
            )  # fmt: skip
        return [(fate.decode(), mid.decode()) for fate, mid in await pipe.execute()]

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
        result: bytes = await self._deliver(
            keys=self._deliver_keys(message),
            args=self._deliver_args(step, message, now, lease_end, message_json, receipts),
        )
        return result.decode()

    async def complete_all(
        self, items: Sequence[tuple[Queued, str, Sequence[DeliveryReceipt]]], now: datetime
    ) -> list[str]:
        """'complete' steps for many messages `(message, message JSON, receipts)` in
        one pipelined round trip."""
        if not items:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for message, message_json, receipts in items:
            await self._deliver(
                keys=self._deliver_keys(message),
                args=self._deliver_args("complete", message, now, None, message_json, receipts),
                client=pipe,
            )
        return [r.decode() for r in await pipe.execute()]

    def _deliver_keys(self, message: Queued) -> list[str]:
        return [self.message_key(message.message_id), self.due_key, self.sending_key,
                self.open_key, client_messages_stream(self.partition),
                receipts_stream(self.partition)]  # fmt: skip

    @staticmethod
    def _deliver_args(
        step: Step,
        message: Queued,
        now: datetime,
        lease_end: datetime | None,
        message_json: str,
        receipts: Sequence[DeliveryReceipt],
    ) -> list[str | float | int]:
        return [step, message.message_id, len(message.decisions), now.timestamp(),
                (lease_end or now).timestamp(), message_json,
                *(r.model_dump_json() for r in receipts)]  # fmt: skip
