"""The services' Prometheus metrics, each service in a registry of its own.

A registry per app instance, not prometheus_client's global one: tests build
several apps in one process, and a counter registered twice in one registry is an
error. Each registry holds FastStream's metrics (`faststream_*`, from its
`RedisPrometheusMiddleware`: messages received and processed per handler, with
their latency) and ours:

| metric | labels | what |
|---|---|---|
| `rehabgate_decisions_total` | `outcome` | gatekeeper: decisions emitted |
| `rehabgate_events_total` | `fate` | gatekeeper: inbound entries handled (applied, duplicate, dead_lettered, deferred) |
| `rehabgate_dead_letters_total` | `service`, `reason` | entries dead-lettered, by the reason's leading words |
| `rehabgate_deliveries_total` | `channel`, `result` | notifier: client messages delivered or failed |
| `rehabgate_stream_pending` | `stream`, `group` | entries read but not yet acknowledged |
| `rehabgate_stream_lag` | `stream`, `group` | entries not yet read by the group |

The two gauges are read from `XINFO GROUPS` at scrape time, so they are never
staler than the scrape. A server that cannot compute `lag` (Redis 7.0, or after
an XDEL/XTRIM inside the group's range) reports none: that series is then
absent, not a made-up number. When Redis does not answer, both gauges are absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, get_args

from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from redis.exceptions import RedisError

from rehabgate.schemas.inbound import Channel
from rehabgate.schemas.outbound import Outcome

from .connections import RedisClient
from .log_allowlist import safe_reason

DELIVERY_RESULTS = ("delivered", "failed")


class ServiceMetrics:
    """What both services expose: FastStream's handler metrics, dead letters and
    the backlog of the consumer groups the service reads."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.middleware = RedisPrometheusMiddleware(registry=self.registry, app_name=service)
        self.dead_letters = Counter(
            "rehabgate_dead_letters",
            "Entries dead-lettered, by service and the leading words of the reason.",
            ["service", "reason"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "rehabgate_stream_pending",
            "Entries delivered to the group and not yet acknowledged (XINFO GROUPS pending).",
            ["stream", "group"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "rehabgate_stream_lag",
            "Entries not yet delivered to the group (XINFO GROUPS lag; absent when unknown).",
            ["stream", "group"],
            registry=self.registry,
        )

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        """Count dead letters by the reason's leading words (as they are logged): a
        bounded label, free of the payload text some reasons quote."""
        for reason in reasons:
            self.dead_letters.labels(self.service, safe_reason(reason) or "other").inc()

    async def render(
        self, redis: RedisClient, groups: Sequence[tuple[str, str]], timeout_s: float
    ) -> bytes:
        """The Prometheus text exposition, with the gauges of `groups` (the (stream,
        group) pairs the service consumes) read from Redis just now."""
        await self._read_groups(redis, groups, timeout_s)
        return generate_latest(self.registry)

    async def _read_groups(
        self, redis: RedisClient, groups: Sequence[tuple[str, str]], timeout_s: float
    ) -> None:
        self.pending.clear()
        self.lag.clear()
        streams = list(dict.fromkeys(stream for stream, _ in groups))
        pipe = redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xinfo_groups(stream)
        try:
            replies = await asyncio.wait_for(pipe.execute(raise_on_error=False), timeout_s)
        except (TimeoutError, RedisError):  # Redis away: the gauges stay absent
            return
        ours = set(groups)
        for stream, reply in zip(streams, replies, strict=True):
            if isinstance(reply, Exception):  # the stream does not exist (yet)
                continue
            for info in reply:
                group = _text(info["name"])
                if (stream, group) not in ours:
                    continue
                self.pending.labels(stream, group).set(int(info["pending"]))
                if info.get("lag") is not None:
                    self.lag.labels(stream, group).set(int(info["lag"]))


class GatekeeperMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("gatekeeper")
        self.decisions = Counter(
            "rehabgate_decisions",
            "Decisions emitted by the gatekeeper, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "rehabgate_events",
            "Inbound entries handled, by fate (a deferred entry counts again when retried).",
            ["fate"],
            registry=self.registry,
        )
        for outcome in get_args(Outcome):
            self.decisions.labels(outcome)

    def handled(
        self, fates: Iterable[str], outcomes: Iterable[str], dead_letter_reasons: Iterable[str]
    ) -> None:
        """Count one batch: each entry's fate, each decision's outcome, each dead letter."""
        for fate in fates:
            self.events.labels(fate).inc()
        for outcome in outcomes:
            self.decisions.labels(outcome).inc()
        self.dead_lettered(dead_letter_reasons)


class NotifierMetrics(ServiceMetrics):
    def __init__(self) -> None:
        super().__init__("notifier")
        self.deliveries = Counter(
            "rehabgate_deliveries",
            "Client messages by channel and result (delivered, or failed with a receipt).",
            ["channel", "result"],
            registry=self.registry,
        )
        for channel in get_args(Channel):
            for result in DELIVERY_RESULTS:
                self.deliveries.labels(channel, result)

    def delivered(self, channel: str, result: str) -> None:
        self.deliveries.labels(channel, result).inc()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
