"""The default delivery channel: the partition's client-messages stream, written
together with the ledger entry and the receipt in one atomic step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from redis.asyncio import Redis

from rehabgate.schemas.outbound import ClientMessage, DeliveryReceipt
from rehabgate.schemas.streams import (
    PREFIX,
    client_messages_stream,
    partition_tag,
    receipts_stream,
)

DeliveryResult = Literal["delivered", "duplicate"]


def ledger_key(partition: int) -> str:
    return f"{PREFIX}:{partition_tag(partition)}:delivery-ledger"


class StreamChannel:
    def __init__(self, redis: Redis, partition: int) -> None:
        self.partition = partition
        self._deliver = redis.register_script(
            (Path(__file__).parent / "deliver_step.lua").read_text()
        )
        self._redis = redis

    async def deliver(
        self, messages: Sequence[tuple[ClientMessage, DeliveryReceipt]]
    ) -> list[DeliveryResult]:
        if not messages:
            return []
        pipe = self._redis.pipeline(transaction=False)
        keys = [
            ledger_key(self.partition),
            client_messages_stream(self.partition),
            receipts_stream(self.partition),
        ]
        for message, receipt in messages:
            await self._deliver(
                keys=keys,
                args=[str(message.decision_id), message.model_dump_json(),
                      receipt.model_dump_json()],
                client=pipe,
            )  # fmt: skip
        return [r.decode() for r in await pipe.execute()]
