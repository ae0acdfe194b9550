"""Send the outbox's due messages: read, check quiet hours, render, deliver.

Per message: its client's contact picks the channel and the locale (no contact:
the client-messages stream, in the default locale). The stream channel
completes in one atomic step. E-mail and webhooks are claimed first (state
'sending' with a lease longer than the retry deadline), then sent with bounded
retries, then finished with a `message.delivered` or `message.failed` receipt
per decision. A notifier that dies mid-send leaves the claim to lapse; the next
sender re-sends with the same idempotency key (see the package docstring).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import structlog
from jinja2 import TemplateError
from opentelemetry import trace

from rehabgate.schemas.outbound import DeliveryReceipt
from rehabgate.schemas.streams import TRACEPARENT
from rehabgate.services.common.tracing import joined_span, trace_fields

from .channels.base import ChannelName, ExternalChannel, PermanentError
from .channels.retry import RetryPolicy, send_with_retries
from .channels.stream import StreamChannel
from .contacts import Contact, read_contacts
from .messages import Composed, compose
from .outbox.store import Outbox, Queued
from .quiet_hours import quiet_until
from .rendering import Renderer

#: A claim outlives the retry deadline by this much, so a live sender is never overtaken.
LEASE_MARGIN = timedelta(seconds=30)


@dataclass
class Dispatcher:
    outbox: Outbox
    renderer: Renderer
    external: dict[ChannelName, ExternalChannel] = field(default_factory=dict)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    held_digest: bool = False
    concurrency: int = 16
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("rehabgate.notifier")
    )
    #: Called with (channel, "delivered" | "failed") per message a receipt finished.
    count_delivery: Callable[[ChannelName, str], None] = lambda channel, result: None
    #: A span per message sent, continuing its decisions' traces (common/tracing.py).
    tracer: trace.Tracer | None = None

    def __post_init__(self) -> None:
        self.stream = StreamChannel(self.outbox)
        self._slots = asyncio.Semaphore(self.concurrency)

    async def send(
        self,
        message_ids: Sequence[str],
        now: datetime,
        external: bool = True,
        known: Mapping[str, Queued] | None = None,
        contacts: Mapping[str, Contact | None] | None = None,
    ) -> Counter[str]:
        """Send those of `message_ids` that are ready at `now`. With `external=False`
        e-mail and webhook messages are left for the outbox loop (a batch handler
        must not wait on a slow receiver). `known` messages (as just stored) and
        `contacts` the caller has already are not read again; the deliver step
        checks a message is unchanged before sending it. Returns counts of what
        happened."""
        counts: Counter[str] = Counter()
        found = dict(known or {})
        unread = [m for m in message_ids if m not in found]
        found |= {q.message_id: q for q in await self.outbox.read(unread)}
        ready = [q for m in message_ids if (q := found.get(m)) is not None and q.ready(now)]
        contact_of = dict(contacts or {})
        if missing := [q.client_id for q in ready if q.client_id not in contact_of]:
            contact_of |= await read_contacts(self.outbox.redis, self.outbox.partition, missing)
        on_stream: list[tuple[Queued, Composed | None, Sequence[DeliveryReceipt]]] = []
        jobs = []
        for q in ready:
            contact = contact_of.get(q.client_id)
            until = quiet_until(contact.quiet_hours, now) if contact else None
            if until is not None and q.state == "queued":
                await self.outbox.defer(q.message_id, until)
                counts["deferred"] += 1
                continue
            channel: ChannelName = contact.channel if contact else "stream"
            try:
                composed = compose(q.decisions, now, contact.locale if contact else None,
                                   self.renderer, self.held_digest,
                                   with_html=channel == "email")  # fmt: skip
            except TemplateError as exc:
                reason = f"message could not be rendered ({type(exc).__name__})"
                on_stream.append((q, None, _receipts(q, "message.failed", channel, now, reason)))
                self.log.error("message_unrenderable", message_id=q.message_id,
                               clinic_id=q.clinic_id, error=type(exc).__name__)  # fmt: skip
                continue
            if composed is None:  # held only, and the digest was switched off meanwhile
                on_stream.append((q, None, ()))
            elif channel == "stream":
                on_stream.append((q, composed, _receipts(q, "message.delivered", "stream", now)))
            elif (sender := self.external.get(channel)) is None:
                reason = f"{channel} channel not configured"
                on_stream.append((q, None, _receipts(q, "message.failed", channel, now, reason)))
            elif external and contact is not None:
                jobs.append(self._send_external(q, composed, contact, sender, now))
            else:
                counts["left_for_loop"] += 1
        spans = [self._span(q) for q, _, _ in on_stream]
        traceparents = {q.message_id: trace_fields(span).get(TRACEPARENT, "")
                        for (q, _, _), span in zip(on_stream, spans, strict=True)}  # fmt: skip
        results = await self.stream.deliver_all(on_stream, now, traceparents)
        for (_, composed, receipts), result, span in zip(on_stream, results, spans, strict=True):
            counts[fate := _fate(result, composed, receipts)] += 1
            if fate in ("delivered", "failed"):
                self.count_delivery(receipts[0].channel, fate)
            span.set_attribute("rehabgate.delivery", fate)
            span.end()
        for result in await asyncio.gather(*jobs):
            counts[result] += 1
        return counts

    async def _send_external(
        self,
        q: Queued,
        composed: Composed,
        contact: Contact,
        sender: ExternalChannel,
        now: datetime,
    ) -> str:
        async with self._slots:
            lease_end = now + timedelta(seconds=self.policy.deadline_s) + LEASE_MARGIN
            claimed = await self.outbox.step("claim", q, now, lease_end=lease_end)
            if claimed not in ("claimed", "reclaimed"):
                return _fate(claimed, composed, ())
            started = time.monotonic()
            event_type: ReceiptType = "message.delivered"
            reason = None
            with trace.use_span(self._span(q), end_on_exit=True) as span:
                try:
                    tries = await send_with_retries(
                        lambda: sender.send(composed, contact), self.policy
                    )
                except PermanentError as exc:
                    tries, reason = 0, exc.reason
                    event_type = "message.failed"
                span.set_attribute("rehabgate.delivery", event_type.removeprefix("message."))
            outcome = event_type.removeprefix("message.")
            at = now + timedelta(seconds=time.monotonic() - started)
            receipts = _receipts(q, event_type, sender.name, at, reason)
            finished = await self.outbox.step("finish", q, at, receipts=receipts)
            log = self.log.info if outcome == "delivered" else self.log.warning
            log(f"message_{outcome}", message_id=q.message_id, client_id=q.client_id,
                channel=sender.name, tries=tries, resend=claimed == "reclaimed",
                reason=reason)  # fmt: skip
            if finished != "finished":
                return "duplicate"
            self.count_delivery(sender.name, outcome)
            return outcome

    def _span(self, q: Queued) -> trace.Span:
        span = joined_span(self.tracer, "notifier deliver", q.traceparents)
        span.set_attributes({"rehabgate.message_id": q.message_id,
                             "rehabgate.client_id": q.client_id})  # fmt: skip
        return span


ReceiptType = Literal["message.delivered", "message.failed"]


def _receipts(
    q: Queued,
    event_type: ReceiptType,
    channel: ChannelName,
    at: datetime,
    reason: str | None = None,
) -> list[DeliveryReceipt]:
    """One receipt per decision the message covers, all naming the one message."""
    return [
        DeliveryReceipt(
            event_type=event_type,
            message_id=UUID(q.message_id),
            decision_id=d.decision_id,
            clinic_id=q.clinic_id,
            client_id=q.client_id,
            channel=channel,
            at=at,
            reason=reason,
        )
        for d in q.decisions
    ]


def _fate(result: str, composed: Composed | None, receipts: Sequence[DeliveryReceipt]) -> str:
    if result not in ("completed", "finished"):
        return {"gone": "duplicate"}.get(result, result)
    if composed is not None:
        return "delivered"
    return "failed" if receipts else "no_message"
