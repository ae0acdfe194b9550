"""The default channel: the partition's client-messages stream (field `message`).

Exactly once without any idempotency help from the reader: the message, its
receipts and its removal from the outbox are one atomic Redis step
(`deliver_step.lua`, step 'complete'), which does nothing for a message that
is gone or was changed since it was read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rehabgate.schemas.outbound import DeliveryReceipt
from rehabgate.services.notifier.messages import Composed
from rehabgate.services.notifier.outbox.store import Outbox, Queued

from .base import ChannelName


class StreamChannel:
    name: ChannelName = "stream"

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def deliver_all(
        self,
        items: Sequence[tuple[Queued, Composed | None, Sequence[DeliveryReceipt]]],
        now: datetime,
        traceparents: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Deliver many in one round trip; a None message only writes the receipts
        (a message that failed before it could be sent) or nothing at all.
        `traceparents`: message id -> the trace context its entry carries."""
        return await self._outbox.complete_all(
            [(q, c.message.model_dump_json() if c else "", r) for q, c, r in items],
            now,
            traceparents,
        )
