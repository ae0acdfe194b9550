"""`rehabgate demo`: a scripted clinic against the real stack, printed as it happens.

The demo's own gatekeeper and notifier serve HTTP on free loopback ports (a
`rehabgate up` on this host keeps 8080 and 8081); at the end the demo scrapes their
`/metrics` and prints the decision and delivery counters, so `make demo` shows that
the metrics count what happened. On its own Redis (no `REDIS_URL`) the demo fails
when either counter is zero; on a shared one, other processes may take the work.

When `REDIS_URL` is the Redis of a `rehabgate up` running in this directory (the
README's "For physios" walkthrough), the demo starts no services of its own: it
publishes into that Redis, waits for the running services, and scrapes their
`/metrics` at the addresses `up` wrote to `.rehabgate/up.json`.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from rehabgate.schemas.outbound import ClientMessage, DeliveryReceipt, ProgressionEvaluated
from rehabgate.schemas.streams import (
    EVENT_FIELD,
    GATEKEEPER_GROUP,
    INBOUND,
    INBOUND_DEAD_LETTER,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_stream,
    receipts_stream,
)
from rehabgate.services.common.redis_server import free_port
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.audit.history import decision_label
from rehabgate.services.notifier.outbox.store import OutboxKeys

from .demo_clinic import demo_lines
from .scrape import describe, scrape, totals
from .stack import Stack, live_up
from .stream_reading import last_id, read_after


def run_demo(
    settings: Settings,
    timeout: float = 120.0,
    channel: str = "stream",
    address: str | None = None,
) -> int:
    """`channel`: stream (printed from the client-messages stream) or email/webhook
    (sent through the channel the REHABGATE_* variables configure; printed from
    their receipts)."""
    run_id = secrets.token_hex(2)
    lines = demo_lines(run_id, channel, address)
    with _services(settings) as (stack, metrics, logs):
        assert stack.redis_url is not None
        client = redis.Redis.from_url(stack.redis_url)
        partitions = range(settings.partitions)
        cursors = {client_messages_stream(p): last_id(client, client_messages_stream(p))
                   for p in partitions}  # fmt: skip
        receipt_cursors = {receipts_stream(p): last_id(client, receipts_stream(p))
                           for p in partitions}  # fmt: skip
        dead_cursor = last_id(client, INBOUND_DEAD_LETTER)
        decisions_from = {evaluated_stream(p): cursors_id for p in partitions
                          for cursors_id in [last_id(client, evaluated_stream(p))]}  # fmt: skip
        print(f"rehabgate demo: Redis at {stack.redis_url}; run {run_id}; "
              f"publishing {len(lines)} clinic events\n")  # fmt: skip
        pipe = client.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(INBOUND, {EVENT_FIELD: line})
        pipe.execute()

        shown = 0
        deadline = time.monotonic() + timeout
        while True:
            shown += _print_messages(client, cursors, run_id)
            shown += _print_receipts(client, receipt_cursors, run_id)
            if _drained(client, partitions):
                shown += _print_messages(client, cursors, run_id)
                shown += _print_receipts(client, receipt_cursors, run_id)
                break
            if stack.dead():
                print(f"demo: service(s) stopped unexpectedly: {stack.dead()}")
                return 1
            if time.monotonic() > deadline:
                print("demo: timed out waiting for the services to drain")
                return 1
            time.sleep(0.2)
        dead = read_after(client, INBOUND_DEAD_LETTER, dead_cursor)
        _print_table(client, decisions_from, run_id)
        print(f"\n{shown} client messages delivered; {len(dead)} events dead-lettered. "
              f"Service logs: {logs}")  # fmt: skip
        counted = _print_metrics(metrics)
        return 0 if shown and (counted or settings.redis_url) else 1


@contextmanager
def _services(settings: Settings) -> Iterator[tuple[Stack, dict[str, str], str]]:
    """The services to run the demo against, their /metrics URLs and where they log:
    those of the `rehabgate up` serving REDIS_URL, else a pair of our own."""
    running = live_up(settings.redis_url) if settings.redis_url else None
    if running is not None:
        print(f"rehabgate demo: using the services of `rehabgate up` (pid {running['pid']})")
        stack = Stack(settings.redis_url, None)  # not entered: nothing of ours to start
        yield stack, dict(running.get("metrics", {})), "the terminal running `rehabgate up`"
        return
    log_dir = Path(tempfile.mkdtemp(prefix="rehabgate-demo-logs-"))
    ports = {"gatekeeper": free_port(), "notifier": free_port()}
    http = {"REHABGATE_HTTP_HOST": "127.0.0.1", "REHABGATE_HTTP_PORT": str(ports["gatekeeper"]),
            "REHABGATE_NOTIFIER_HTTP_PORT": str(ports["notifier"])}  # fmt: skip
    metrics = {s: f"http://127.0.0.1:{port}/metrics" for s, port in ports.items()}
    with Stack(settings.redis_url, None, log_dir, {"gatekeeper": http, "notifier": http}) as stack:
        yield stack, metrics, str(log_dir)


def _print_metrics(urls: dict[str, str]) -> bool:
    """Print the services' decision and delivery counters; true when both are non-zero."""
    try:
        gatekeeper = scrape(urls["gatekeeper"])
        notifier = scrape(urls["notifier"])
    except (httpx.HTTPError, KeyError) as exc:
        print(f"demo: /metrics did not answer ({type(exc).__name__})")
        return False
    decisions = totals(gatekeeper, "rehabgate_decisions_total", "outcome")
    deliveries = totals(notifier, "rehabgate_deliveries_total", "channel", "result")
    print(f"/metrics gatekeeper rehabgate_decisions_total: {describe(decisions)}")
    print(f"/metrics notifier rehabgate_deliveries_total: {describe(deliveries)}")
    return any(decisions.values()) and any(deliveries.values())


def _drained(client: redis.Redis, partitions: range) -> bool:
    """Both groups have read everything and acknowledged it, and the notifier's
    outbox holds nothing due now or being sent."""
    for p in partitions:
        outbox = OutboxKeys(p)
        if client.zcount(outbox.due, "-inf", time.time()) or client.zcard(outbox.sending):
            return False
    checks = [(INBOUND, GATEKEEPER_GROUP)] + [
        (evaluated_stream(p), NOTIFIER_GROUP) for p in partitions
    ]
    for stream, group in checks:
        groups = (
            {g["name"].decode(): g for g in client.xinfo_groups(stream)}
            if client.exists(stream)
            else {}
        )
        g = groups.get(group)
        if g is None or g["pending"] or g.get("lag", 1):
            return False
    return True


def _print_messages(client: redis.Redis, cursors: dict[str, str], run_id: str) -> int:
    shown = 0
    for stream, cursor in list(cursors.items()):
        for entry_id, fields in read_after(client, stream, cursor):
            cursors[stream] = entry_id
            message = ClientMessage.model_validate_json(fields[b"message"])
            if not message.client_id.endswith(run_id):
                continue
            shown += 1
            print(f"── message to {message.client_id} ({message.outcome}) ──")
            print(f"   {message.title}")
            for line in message.body.splitlines():
                print(f"   {line}")
            print()
    return shown


def _print_receipts(client: redis.Redis, cursors: dict[str, str], run_id: str) -> int:
    """Messages sent by e-mail or webhook: their content went to the receiver, so
    the demo shows their receipts (one per decision; a coalesced message counts once)."""
    shown: set[str] = set()
    for stream, cursor in list(cursors.items()):
        for entry_id, fields in read_after(client, stream, cursor):
            cursors[stream] = entry_id
            receipt = DeliveryReceipt.model_validate_json(fields[b"event"])
            if receipt.channel == "stream" or not receipt.client_id.endswith(run_id):
                continue
            if str(receipt.message_id) in shown:
                continue
            if receipt.event_type == "message.delivered":
                shown.add(str(receipt.message_id))
                print(f"── message to {receipt.client_id} sent by {receipt.channel} "
                      f"(id {receipt.message_id}) ──")  # fmt: skip
            else:
                print(f"── message to {receipt.client_id} FAILED on {receipt.channel}: "
                      f"{receipt.reason} ──")  # fmt: skip
    return len(shown)


def _print_table(client: redis.Redis, streams: dict[str, str], run_id: str) -> None:
    by_client: dict[str, list[ProgressionEvaluated]] = defaultdict(list)
    for stream, cursor in streams.items():
        for _, fields in read_after(client, stream, cursor):
            decision = ProgressionEvaluated.model_validate_json(fields[b"event"])
            if decision.client_id.endswith(run_id):
                by_client[decision.client_id].append(decision)
    for client_id, decisions in sorted(by_client.items()):
        counts: dict[str, int] = defaultdict(int)
        for d in decisions:
            counts[d.outcome] += 1
        print(f"\n{client_id}: {len(decisions)} decisions "
              f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")  # fmt: skip
        print(f"  {'when':<17} {'cause':<17} {'outcome':<10} {'stage after':<22} why")
        for d in decisions:
            if d.outcome == "held" and d.cause_event_type != "clinician.action":
                continue
            when = d.occurred_at.strftime("%Y-%m-%d %H:%M")
            print(f"  {when:<17} {d.cause_event_type:<17} {decision_label(d):<10} "
                  f"{(d.to_stage or ''):<22} {d.summary[:70]}")  # fmt: skip
        held = counts.get("held", 0)
        if held:
            print(f"  (+ {held} held decisions: criteria not yet met; see the audit trail)")
