"""Builders shared by the notifier's integration tests: decisions, a notifier on
its own partition (so tests never see each other's outbox), contacts as the
gatekeeper stores them, and readers of what the notifier wrote."""

from __future__ import annotations

import random
import uuid
from datetime import datetime
from typing import Any

import redis.asyncio as aredis

from rehabgate.schemas.inbound import ClientContactUpdated, ClientEnrolled
from rehabgate.schemas.outbound import (
    ClientMessage,
    CriterionResult,
    DeliveryReceipt,
    PhysioAlert,
    ProgressionEvaluated,
)
from rehabgate.schemas.streams import client_messages_stream, physio_alerts_stream, receipts_stream
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.domain import enroll
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.notifier.app import build_notifier
from rehabgate.services.notifier.process import Notifier
from tests.events import enrolment

PROTOCOL = load_protocols()["achilles-tendinopathy@1"]
Entry = tuple[str, dict[bytes, bytes]]


def a_partition() -> int:
    """A partition of its own: its outbox, ledger and streams are this test's alone."""
    return random.randrange(10_000, 1_000_000)


def notifier(r: aredis.Redis, partition: int, **settings: Any) -> Notifier:
    return build_notifier(r, partition, Settings(redis_url="redis://unused", **settings))


def a_decision(client_id: str, at: datetime | None = None, **changes: Any) -> ProgressionEvaluated:
    decision = enroll(PROTOCOL, None, ClientEnrolled.model_validate(enrolment(client_id)))
    assert decision.evaluation is not None
    update: dict[str, Any] = {"decision_id": uuid.uuid4(), **changes}
    if at is not None:
        update["occurred_at"] = at
    return decision.evaluation.model_copy(update=update)


def flagged(client_id: str, **changes: Any) -> ProgressionEvaluated:
    swelling = CriterionResult(
        id="new-swelling", kind="swelling_reported", role="safety", status="failed",
        observed=True, threshold=False, explanation="swelling reported at check-in",
        client_text="new swelling", source="clinic default",
    )  # fmt: skip
    return a_decision(client_id, outcome="flagged", criteria=(swelling,), prescription=None,
                      summary="flagged: new swelling", **changes)  # fmt: skip


def entry(decision: ProgressionEvaluated, n: int = 1) -> Entry:
    return (f"{n}-0", {b"event": decision.model_dump_json().encode()})


async def set_contact(
    r: aredis.Redis, partition: int, client_id: str, channel: str, address: str, **more: Any
) -> None:
    """The contact hash exactly as the gatekeeper's contact step writes it."""
    event = ClientContactUpdated.model_validate({
        "event_id": str(uuid.uuid4()), "event_type": "client.contact.updated",
        "occurred_at": "2026-11-02T08:00:00+00:00", "clinic_id": "clinic-a",
        "client_id": client_id, "channel": channel, "address": address, **more,
    })  # fmt: skip
    contact = event.model_dump_json(include={"channel", "address", "locale", "quiet_hours"})
    await r.hset(ClientKeys(client_id, partition).contact, "contact", contact)


async def messages(r: aredis.Redis, partition: int) -> list[ClientMessage]:
    return [ClientMessage.model_validate_json(f[b"message"])
            for _, f in await r.xrange(client_messages_stream(partition))]  # fmt: skip


async def receipts(r: aredis.Redis, partition: int) -> list[DeliveryReceipt]:
    return [DeliveryReceipt.model_validate_json(f[b"event"])
            for _, f in await r.xrange(receipts_stream(partition))]  # fmt: skip


async def alerts(r: aredis.Redis, partition: int) -> list[PhysioAlert]:
    return [PhysioAlert.model_validate_json(f[b"event"])
            for _, f in await r.xrange(physio_alerts_stream(partition))]  # fmt: skip
