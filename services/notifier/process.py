"""Use case: a batch of decisions into the outbox, each exactly once; then send
what is due.

A decision that cannot be read is dead-lettered with the reason; one that needs
no message (held, unless the held digest is on) is simply acknowledged. Each
other decision is placed (coalescing.py: which message, due when) and taken in
by one atomic step that also alerts the physios of a flag. Redis failures
raise, so the batch stays pending and is redelivered; the ledger makes that
harmless, and a redelivered decision's message is sent if it is still due.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from rehabgate.schemas.outbound import PhysioAlert, ProgressionEvaluated
from rehabgate.schemas.streams import (
    EVENT_FIELD,
    TRACEPARENT,
    evaluated_dead_letter_stream,
    evaluated_stream,
)
from rehabgate.services.common.connections import RedisClient

from .coalescing import place
from .contacts import read_contacts
from .messages import needs_message, withdraws
from .outbox.store import Entry, Outbox
from .sending import Dispatcher


@dataclass
class Notifier:
    """One partition's notifier: its outbox, its sender and the message policy."""

    redis: RedisClient
    outbox: Outbox
    dispatcher: Dispatcher
    coalesce_window: timedelta = timedelta(minutes=5)
    held_digest: bool = False

    @property
    def partition(self) -> int:
        return self.outbox.partition


async def process_decisions(
    entries: Sequence[tuple[str, Mapping[bytes, bytes]]],
    notifier: Notifier,
    now: datetime | None = None,
    send_external: bool = True,
) -> Counter[str]:
    """Returns counts of what happened: scheduled, duplicate, no_message,
    dead_lettered, and what the send of the due messages did (delivered, ...)."""
    at = now or datetime.now(UTC)
    fates: Counter[str] = Counter()
    partition = notifier.partition
    decisions: list[tuple[ProgressionEvaluated, str, str]] = []
    dead = notifier.redis.pipeline(transaction=False)
    for entry_id, fields in entries:
        raw = fields.get(EVENT_FIELD.encode(), b"")
        try:
            decision = ProgressionEvaluated.model_validate_json(raw)
        except ValidationError as exc:
            dead.xadd(
                evaluated_dead_letter_stream(partition),
                {"reason": f"unreadable decision: {exc.error_count()} errors", "raw": raw,
                 "source_stream": evaluated_stream(partition), "source_id": entry_id,
                 "dead_lettered_at": at.isoformat()},
            )  # fmt: skip
            fates["dead_lettered"] += 1
            continue
        if not needs_message(decision, notifier.held_digest):
            fates["no_message"] += 1
            continue
        traceparent = fields.get(TRACEPARENT.encode(), b"").decode("ascii", "replace")
        decisions.append((decision, raw.decode(), traceparent))
    if fates["dead_lettered"]:
        await dead.execute()

    by_client: dict[str, list[tuple[ProgressionEvaluated, str, str]]] = defaultdict(list)
    for decision, raw_json, traceparent in decisions:
        by_client[decision.client_id].append((decision, raw_json, traceparent))
    contacts, open_messages = await asyncio.gather(
        read_contacts(notifier.redis, partition, by_client),
        notifier.outbox.open_messages(list(by_client)),
    )
    taken: list[Entry] = []
    for client_id, items in by_client.items():
        contact = contacts.get(client_id)
        placements = place(
            [(str(d.decision_id), d.occurred_at) for d, _, _ in items],
            open_messages.get(client_id),
            contact.quiet_hours if contact else None,
            at,
            notifier.coalesce_window,
            catch_up={str(d.decision_id) for d, _, _ in items if d.corrected_after is not None},
        )
        taken.extend(
            Entry(d, raw_json, p, _alert(d), traceparent)
            for (d, raw_json, traceparent), p in zip(items, placements, strict=True)
        )
    scheduled = await notifier.outbox.schedule(taken)
    message_ids = []
    for fate, message_id in scheduled.fates:
        fates["duplicate" if fate == "duplicate" else "scheduled"] += 1
        message_ids.append(message_id)
    sent = await notifier.dispatcher.send(
        list(dict.fromkeys(message_ids)), at, external=send_external,
        known=scheduled.created, contacts=contacts,
    )  # fmt: skip
    return fates + sent


def _alert(decision: ProgressionEvaluated) -> str | None:
    """A flag's alert for the clinic's physio channel (once: a correction that flags
    what was flagged already alerts no one again), and a late event's decision that
    takes back an unlock or completion: ids and the reason only."""
    new_flag = decision.outcome == "flagged" and decision.superseded_outcome != "flagged"
    if not new_flag and not withdraws(decision):
        return None
    return PhysioAlert(
        decision_id=decision.decision_id,
        clinic_id=decision.clinic_id,
        client_id=decision.client_id,
        protocol=decision.protocol,
        rule_ids=tuple(
            c.id for c in decision.criteria if c.role == "safety" and c.status == "failed"
        ),
        reason=decision.summary,
        occurred_at=decision.occurred_at,
    ).model_dump_json()
