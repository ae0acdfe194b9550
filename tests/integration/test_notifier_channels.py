"""E-mail and webhooks against real servers on loopback: an aiosmtpd SMTP server
and an HTTP receiver that checks Standard Webhooks signatures itself.

Each case asserts exactly one effective delivery per decision (one accepted
e-mail; one accepted webhook per webhook-id), also when the same batch is
processed twice, and the receipt that says so."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aredis
import structlog

from rehabgate.services.common.settings import WebhookEndpoint
from rehabgate.services.notifier.channels.webhook import WebhookChannel, sign
from rehabgate.services.notifier.contacts import Contact
from rehabgate.services.notifier.loop import OutboxLoop
from rehabgate.services.notifier.messages import Composed
from rehabgate.services.notifier.process import Notifier, process_decisions
from tests.events import unique_client
from tests.integration.notifier_support import (
    a_decision,
    a_partition,
    entry,
    messages,
    notifier,
    receipts,
    set_contact,
)
from tests.integration.receivers import (
    SmtpReceiver,
    WebhookReceiver,
    free_port,
    smtp_server,
    webhook_server,
)
from tests.waiting import wait_for_async

pytestmark = pytest.mark.integration
KEY = os.urandom(32)
SECRET = "whsec_" + base64.b64encode(KEY).decode()
FAST_RETRIES: dict[str, Any] = {
    "delivery_attempts": 4, "delivery_backoff_s": 0.01, "delivery_backoff_max_s": 0.05,
    "delivery_deadline_s": 10,
}  # fmt: skip


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with smtp_server(SmtpReceiver()) as receiver:
        yield receiver


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with webhook_server(WebhookReceiver(KEY)) as receiver:
        yield receiver


def email_notifier(r: aredis.Redis, p: int, smtp: SmtpReceiver) -> Notifier:
    return notifier(r, p, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none",
                    smtp_from="Rehab <rehab@clinic.example>", **FAST_RETRIES)  # fmt: skip


def webhook_notifier(r: aredis.Redis, p: int, hook: WebhookReceiver) -> Notifier:
    return notifier(r, p, webhooks={"clinic-a": {"url": hook.url, "secret": SECRET}},
                    **FAST_RETRIES)  # fmt: skip


async def test_email_is_sent_once_with_the_decision_id_as_message_id(
    async_redis: aredis.Redis, smtp: SmtpReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "email", "client@example.org", locale="de")
    decision = a_decision(client)
    n = email_notifier(async_redis, p, smtp)

    first = await process_decisions([entry(decision)], n)
    again = await process_decisions([entry(decision)], n)

    assert (first["delivered"], again["duplicate"], again["delivered"]) == (1, 1, 0)
    (mail,) = smtp.accepted
    assert smtp.recipients == [["client@example.org"]]
    assert mail["Message-ID"] == f"<{decision.decision_id}@clinic.example>"
    assert mail["Subject"] == "Willkommen in Ihrem Reha-Programm"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert "Das steht für Sie an" in text.get_content()
    assert html is not None
    assert '<html lang="de">' in html.get_content()
    assert await messages(async_redis, p) == []  # e-mail replaces the stream
    assert [(r.event_type, r.channel) for r in await receipts(async_redis, p)] == [
        ("message.delivered", "email")
    ]


async def test_email_retries_a_busy_server_then_delivers_once(
    async_redis: aredis.Redis, smtp: SmtpReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "email", "client@example.org")
    smtp.script = ["451 4.3.0 busy, try again", "421 4.7.0 slow down"]
    n = email_notifier(async_redis, p, smtp)

    fates = await process_decisions([entry(a_decision(client))], n)

    assert fates["delivered"] == 1
    assert (smtp.attempts, len(smtp.accepted)) == (3, 1)


async def test_an_unknown_mailbox_fails_at_once_with_a_receipt(
    async_redis: aredis.Redis, smtp: SmtpReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "email", "nobody@example.org")
    n = email_notifier(async_redis, p, smtp)

    fates = await process_decisions([entry(a_decision(client))], n)
    again = await process_decisions([entry(a_decision(client))], n)

    assert (fates["failed"], again["failed"]) == (1, 1)
    assert smtp.accepted == []
    failed = [r for r in await receipts(async_redis, p) if r.event_type == "message.failed"]
    assert len(failed) == 2
    assert failed[0].reason == "smtp recipient refused [550]"
    assert "nobody" not in (failed[0].reason or "")  # receipts never carry addresses


async def test_webhook_is_signed_and_sent_once(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-42")
    decision = a_decision(client)
    n = webhook_notifier(async_redis, p, hook)

    first = await process_decisions([entry(decision)], n)
    again = await process_decisions([entry(decision), entry(decision)], n)

    assert (first["delivered"], again["duplicate"]) == (1, 2)
    assert hook.bad_signatures == 0
    (request,) = hook.requests
    assert request["headers"]["webhook-id"] == str(decision.decision_id)
    body = request["body"]
    assert body["type"] == "client.message"
    assert body["data"]["message_id"] == str(decision.decision_id)
    assert body["data"]["recipient"] == "app-user-42"
    assert body["data"]["title"] == "Welcome to your rehab programme"
    assert [(r.event_type, r.channel) for r in await receipts(async_redis, p)] == [
        ("message.delivered", "webhook")
    ]


async def test_webhook_failing_twice_then_succeeding_is_delivered_once(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-7")
    hook.script = [503, 500]
    decision = a_decision(client)
    n = webhook_notifier(async_redis, p, hook)

    fates = await process_decisions([entry(decision)], n)
    again = await process_decisions([entry(decision)], n)

    assert (fates["delivered"], again["delivered"]) == (1, 0)
    assert [r["headers"]["webhook-id"] for r in hook.requests] == [str(decision.decision_id)] * 3
    assert list(hook.effective) == [str(decision.decision_id)]
    assert [r.event_type for r in await receipts(async_redis, p)] == ["message.delivered"]


async def test_webhook_that_always_fails_ends_in_a_failed_receipt(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-9")
    hook.script = [500] * 100
    decision = a_decision(client)
    n = webhook_notifier(async_redis, p, hook)

    fates = await process_decisions([entry(decision)], n)
    again = await process_decisions([entry(decision)], n)

    assert (fates["failed"], again["failed"], again["duplicate"]) == (1, 0, 1)
    assert len(hook.requests) == FAST_RETRIES["delivery_attempts"]
    assert hook.effective == {}
    (receipt,) = await receipts(async_redis, p)
    assert (receipt.event_type, receipt.decision_id, receipt.reason) == (
        "message.failed", decision.decision_id, "gave up after 4 tries: webhook http 500",
    )  # fmt: skip


async def test_webhook_client_error_is_permanent_and_not_retried(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-1")
    hook.script = [410]

    fates = await process_decisions(
        [entry(a_decision(client))], webhook_notifier(async_redis, p, hook)
    )

    assert fates["failed"] == 1
    assert len(hook.requests) == 1


async def test_webhook_to_an_unreachable_receiver_gives_up_within_its_bounds(
    async_redis: aredis.Redis,
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-2")
    n = notifier(async_redis, p, **FAST_RETRIES, webhooks={
        "clinic-a": {"url": f"http://127.0.0.1:{free_port()}/nothing-listens", "secret": SECRET}
    })  # fmt: skip

    fates = await process_decisions([entry(a_decision(client))], n)

    assert fates["failed"] == 1
    (receipt,) = await receipts(async_redis, p)
    assert receipt.reason == "gave up after 4 tries: webhook ConnectError"


class Crash(BaseException):
    """A notifier dying right after the receiver accepted, before the outbox knew."""


class CrashingAfterSend(WebhookChannel):
    async def send(self, composed: Composed, contact: Contact) -> None:
        await super().send(composed, contact)
        raise Crash


async def test_a_crash_between_send_and_record_resends_with_the_same_key(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-5")
    decision = a_decision(client)
    n = webhook_notifier(async_redis, p, hook)
    real = n.dispatcher.external["webhook"]
    n.dispatcher.external["webhook"] = CrashingAfterSend(
        {"clinic-a": WebhookEndpoint.model_validate({"url": hook.url, "secret": SECRET})}
    )
    now = datetime.now(UTC)
    with pytest.raises(Crash):
        await process_decisions([entry(decision)], n, now=now)

    # The restarted notifier: the claim is held until its lease lapses, then re-sent.
    n.dispatcher.external["webhook"] = real
    during = await n.dispatcher.send(await n.outbox.ready_ids(now, 100), now)
    redelivered = await process_decisions([entry(decision)], n, now=now)
    later = now + timedelta(minutes=5)
    resent = await n.dispatcher.send(await n.outbox.ready_ids(later, 100), later)

    assert (during, redelivered["delivered"], resent["delivered"]) == ({}, 0, 1)
    ids = [r["headers"]["webhook-id"] for r in hook.requests]
    assert ids == [str(decision.decision_id)] * 2  # one raw duplicate, same key
    assert list(hook.effective) == [str(decision.decision_id)]  # one effective delivery
    assert [r.event_type for r in await receipts(async_redis, p)] == ["message.delivered"]


async def test_the_outbox_loop_sends_external_messages_off_the_batch_handler(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    p, client = a_partition(), unique_client()
    await set_contact(async_redis, p, client, "webhook", "app-user-8")
    n = webhook_notifier(async_redis, p, hook)
    loop = OutboxLoop([n], poll_s=0.05, batch_size=10, log=structlog.get_logger())
    fates = await process_decisions([entry(a_decision(client))], n, send_external=False)
    loop.start()
    try:
        await wait_for_async(lambda: receipts(async_redis, p), every=0.05, what="a receipt")
    finally:
        await loop.stop()

    assert fates["left_for_loop"] == 1
    assert len(hook.effective) == 1
    assert [r.event_type for r in await receipts(async_redis, p)] == ["message.delivered"]


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    key = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = json.dumps({"test": 2432232314}).encode()
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


async def test_addresses_never_reach_the_logs(
    async_redis: aredis.Redis, smtp: SmtpReceiver, hook: WebhookReceiver
) -> None:
    p = a_partition()
    mail_client, hook_client = unique_client(), unique_client()
    await set_contact(async_redis, p, mail_client, "email", "canary.person@example.org")
    await set_contact(async_redis, p, hook_client, "webhook", "canary-handle-123")
    smtp.script = ["451 4.3.0 busy"]
    hook.script = [503]
    n = notifier(async_redis, p, smtp_host="127.0.0.1", smtp_port=smtp.port,
                 smtp_security="none", smtp_from="rehab@clinic.example",
                 webhooks={"clinic-a": {"url": hook.url, "secret": SECRET}}, **FAST_RETRIES)  # fmt: skip

    with structlog.testing.capture_logs() as logs:
        fates = await process_decisions(
            [entry(a_decision(mail_client)), entry(a_decision(hook_client), 2)], n
        )

    assert fates["delivered"] == 2
    assert any(line.get("event") == "stamina.retry_scheduled" for line in logs)
    text = repr(logs)
    for secret in ("canary.person", "example.org", "canary-handle", hook.url, SECRET):
        assert secret not in text
