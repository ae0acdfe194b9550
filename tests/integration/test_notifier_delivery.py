"""The notifier's use case and delivery channel against a real server."""

from __future__ import annotations

import pytest
import redis.asyncio as aredis

from rehabgate.schemas.inbound import ClientEnrolled
from rehabgate.schemas.outbound import ClientMessage, ProgressionEvaluated
from rehabgate.schemas.streams import (
    client_messages_stream,
    evaluated_dead_letter_stream,
    receipts_stream,
)
from rehabgate.services.gatekeeper.domain import enroll
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.notifier.process import process_decisions
from rehabgate.services.notifier.stream_channel import StreamChannel
from tests.events import enrolment, unique_client

pytestmark = pytest.mark.integration
PROTOCOL = load_protocols()["achilles-tendinopathy@1"]


def a_decision(client_id: str) -> ProgressionEvaluated:
    decision = enroll(PROTOCOL, None, ClientEnrolled.model_validate(enrolment(client_id)))
    assert decision.evaluation is not None
    return decision.evaluation


async def messages_for(r: aredis.Redis, client_id: str) -> list[ClientMessage]:
    found = [ClientMessage.model_validate_json(f[b"message"])
             for _, f in await r.xrange(client_messages_stream(0))]  # fmt: skip
    return [m for m in found if m.client_id == client_id]


async def test_each_decision_becomes_exactly_one_message_and_receipt(
    async_redis: aredis.Redis,
) -> None:
    client = unique_client()
    decision = a_decision(client)
    entry = ("1-0", {b"event": decision.model_dump_json().encode()})
    channel = StreamChannel(async_redis, 0)

    first = await process_decisions([entry], channel, async_redis)
    again = await process_decisions([entry, entry], channel, async_redis)

    assert first["delivered"] == 1
    assert again["duplicate"] == 2
    sent = await messages_for(async_redis, client)
    assert [m.message_id for m in sent] == [decision.decision_id]
    receipts = [f for _, f in await async_redis.xrange(receipts_stream(0))
                if str(decision.decision_id).encode() in f[b"event"]]  # fmt: skip
    assert len(receipts) == 1


async def test_held_decisions_send_nothing(async_redis: aredis.Redis) -> None:
    client = unique_client()
    held = a_decision(client).model_copy(update={"outcome": "held"})

    fates = await process_decisions(
        [("1-0", {b"event": held.model_dump_json().encode()})],
        StreamChannel(async_redis, 0),
        async_redis,
    )

    assert fates == {"no_message": 1}
    assert await messages_for(async_redis, client) == []


async def test_unreadable_decision_is_dead_lettered(async_redis: aredis.Redis) -> None:
    before = await async_redis.xlen(evaluated_dead_letter_stream(0))

    fates = await process_decisions(
        [("9-0", {b"event": b'{"outcome": "unlocked"}'})],
        StreamChannel(async_redis, 0),
        async_redis,
    )

    assert fates["dead_lettered"] == 1
    assert await async_redis.xlen(evaluated_dead_letter_stream(0)) == before + 1
