"""Real receivers on loopback for the notifier's channel tests: an SMTP server
(aiosmtpd) and an HTTP webhook receiver that verifies Standard Webhooks
signatures on its own (hmac + base64 here, not the notifier's code).

Both answer from a script: a list of replies used one per request, then the
default. Both record every request, so a test can count raw attempts as well
as effective deliveries (distinct idempotency keys accepted)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpReceiver:
    """Replies to DATA from `script` (e.g. "451 4.3.0 busy"), then 250. Addresses
    starting with "nobody@" are refused at RCPT with 550."""

    script: list[str] = field(default_factory=list)
    attempts: int = 0
    accepted: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)
    port: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        if self.script:
            return self.script.pop(0)
        content = envelope.original_content or b""
        self.accepted.append(message_from_bytes(content, policy=policy.default))  # type: ignore[arg-type]
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 OK"

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.accepted]


@contextmanager
def smtp_server(receiver: SmtpReceiver) -> Iterator[SmtpReceiver]:
    receiver.port = free_port()
    controller = Controller(receiver, hostname="127.0.0.1", port=receiver.port)
    controller.start()
    try:
        yield receiver
    finally:
        controller.stop()


@dataclass
class WebhookReceiver:
    """Verifies every request's signature with `key`; replies with the statuses in
    `script`, then 200. `effective` holds the bodies accepted per webhook-id (a
    receiver honouring the idempotency key acts on the first only)."""

    key: bytes
    script: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    effective: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_signatures: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verify(self, headers: dict[str, str], body: bytes) -> bool:
        msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
        if abs(time.time() - int(stamp)) > 300:  # the spec's replay tolerance
            return False
        expected = base64.b64encode(
            hmac.new(self.key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        offered = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ")]
        return any(hmac.compare_digest(expected, s) for s in offered)

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            if not self.verify(headers, body):
                self.bad_signatures += 1
                return 401
            self.requests.append({"headers": headers, "body": json.loads(body)})
            status = self.script.pop(0) if self.script else 200
            if status == 200:
                self.effective.setdefault(headers["webhook-id"], json.loads(body))
            return status


@contextmanager
def webhook_server(receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/rehabgate"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
