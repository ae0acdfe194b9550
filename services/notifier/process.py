"""Use case: turn a batch of decisions into client messages, each delivered once.

A decision that cannot be read is dead-lettered with the reason; a decision
that needs no message (held) is simply acknowledged. Redis failures raise, so
the batch stays pending and is redelivered; the ledger makes that harmless.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError
from redis.asyncio import Redis

from rehabgate.schemas.outbound import ClientMessage, DeliveryReceipt, ProgressionEvaluated
from rehabgate.schemas.streams import EVENT_FIELD, evaluated_dead_letter_stream, evaluated_stream

from .messages import compose
from .stream_channel import StreamChannel


async def process_decisions(
    entries: Sequence[tuple[str, Mapping[bytes, bytes]]],
    channel: StreamChannel,
    redis: Redis,
    now: datetime | None = None,
) -> Counter[str]:
    """Returns counts of what happened: delivered, duplicate, no_message, dead_lettered."""
    at = now or datetime.now(UTC)
    fates: Counter[str] = Counter()
    outgoing: list[tuple[ClientMessage, DeliveryReceipt]] = []
    dead = redis.pipeline(transaction=False)
    for entry_id, fields in entries:
        raw = fields.get(EVENT_FIELD.encode(), b"")
        try:
            decision = ProgressionEvaluated.model_validate_json(raw)
        except ValidationError as exc:
            dead.xadd(
                evaluated_dead_letter_stream(channel.partition),
                {"reason": f"unreadable decision: {exc.error_count()} errors", "raw": raw,
                 "source_stream": evaluated_stream(channel.partition), "source_id": entry_id,
                 "dead_lettered_at": at.isoformat()},
            )  # fmt: skip
            fates["dead_lettered"] += 1
            continue
        message = compose(decision, at)
        if message is None:
            fates["no_message"] += 1
            continue
        receipt = DeliveryReceipt(
            event_type="message.delivered",
            message_id=message.message_id,
            decision_id=decision.decision_id,
            clinic_id=decision.clinic_id,
            client_id=decision.client_id,
            channel="stream",
            at=at,
        )
        outgoing.append((message, receipt))
    if fates["dead_lettered"]:
        await dead.execute()
    fates.update(await channel.deliver(outgoing))
    return fates
