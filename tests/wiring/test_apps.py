"""Handler wiring: which streams, groups and subscribers each app declares.

What the handlers do with real entries is tested against a real Redis in
tests/integration (FastStream's in-memory TestRedisBroker hands batch handlers
no stream entry ids, which the gatekeeper needs to dead-letter and ack)."""

from __future__ import annotations

from faststream.specification import AsyncAPI

from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    NOTIFIER_GROUP,
    evaluated_stream,
)
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.app import create_app as gatekeeper_app
from rehabgate.services.notifier.app import create_app as notifier_app


def settings(url: str = "redis://127.0.0.1:1/0", **extra: object) -> Settings:
    return Settings(redis_url=url, consumer="test-consumer", **extra)  # type: ignore[arg-type]


def declared(app_broker: object) -> set[tuple[str, str | None, str | None, bool, int | None]]:
    return {
        (s.stream_sub.name, s.stream_sub.group, s.stream_sub.consumer, s.stream_sub.batch,
         s.stream_sub.min_idle_time)
        for s in app_broker.subscribers  # type: ignore[attr-defined]
    }  # fmt: skip


def test_gatekeeper_reads_inbound_in_batches_with_a_claimer() -> None:
    app = gatekeeper_app(settings(claim_idle_ms=1234))
    assert declared(app.broker) == {
        (INBOUND, GATEKEEPER_GROUP, "test-consumer", True, None),
        (INBOUND, GATEKEEPER_GROUP, "test-consumer-claimer", True, 1234),
    }


def test_notifier_reads_every_partition_with_a_claimer() -> None:
    app = notifier_app(settings(partitions=2))
    streams = {(name, consumer) for name, group, consumer, _, _ in declared(app.broker)
               if group == NOTIFIER_GROUP}  # fmt: skip
    assert streams == {
        (evaluated_stream(p), c)
        for p in (0, 1)
        for c in ("test-consumer", "test-consumer-claimer")
    }


def test_asyncapi_documents_the_handlers() -> None:
    spec = AsyncAPI(gatekeeper_app(settings()).broker, title="gatekeeper")
    channels = spec.to_specification().to_jsonable()["channels"]
    assert set(channels) == {f"{INBOUND}:OnInbound", f"{INBOUND}:OnInboundReclaimed"}
