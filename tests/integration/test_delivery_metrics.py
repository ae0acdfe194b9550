"""`rehabgate_deliveries_total{channel,result}` counts each message once, when its
receipt is written: on the stream, through a webhook that accepts or keeps failing,
and for a channel that is not configured; a re-processed batch counts nothing."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aredis

from rehabgate.services.common.metrics import NotifierMetrics
from rehabgate.services.common.settings import Settings
from rehabgate.services.notifier.app import build_notifier
from rehabgate.services.notifier.process import process_decisions
from tests.events import unique_client
from tests.integration.notifier_support import a_decision, a_partition, entry, set_contact
from tests.integration.receivers import WebhookReceiver, webhook_server

pytestmark = pytest.mark.integration
KEY = os.urandom(32)
FAST: dict[str, Any] = {
    "delivery_attempts": 2, "delivery_backoff_s": 0.01, "delivery_backoff_max_s": 0.02,
    "delivery_deadline_s": 5,
}  # fmt: skip


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with webhook_server(WebhookReceiver(KEY)) as receiver:
        yield receiver


def counted(metrics: NotifierMetrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["channel"], s.labels["result"]): s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "rehabgate_deliveries_total" and s.value
    }


async def test_each_delivery_result_is_counted_once_per_message(
    async_redis: aredis.Redis, hook: WebhookReceiver
) -> None:
    metrics, p = NotifierMetrics(), a_partition()
    webhooks = {"clinic-a": {"url": hook.url, "secret": "whsec_" + base64.b64encode(KEY).decode()}}
    settings = Settings(redis_url="redis://unused", webhooks=webhooks, **FAST)  # type: ignore[arg-type]
    notifier = build_notifier(async_redis, p, settings, metrics=metrics)
    on_stream, accepted, refused, no_email = (unique_client() for _ in range(4))
    await set_contact(async_redis, p, accepted, "webhook", "app-user-1")
    await set_contact(async_redis, p, refused, "webhook", "app-user-2")
    await set_contact(async_redis, p, no_email, "email", "someone@example.org")
    hook.script = [200, 500, 500]  # the first POST is accepted, the next ones fail
    batch = [entry(a_decision(c), n) for n, c in enumerate((on_stream, accepted), start=1)]

    await process_decisions(batch, notifier)
    await process_decisions([entry(a_decision(refused), 3)], notifier)
    await process_decisions([entry(a_decision(no_email), 4)], notifier)
    await process_decisions(batch, notifier)  # redelivered: duplicates, not counted again

    assert counted(metrics) == {
        ("stream", "delivered"): 1,
        ("webhook", "delivered"): 1,
        ("webhook", "failed"): 1,
        ("email", "failed"): 1,  # no SMTP configured: a failed receipt, on no other channel
    }
