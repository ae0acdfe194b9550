"""What every channel outside Redis shares: the error kinds and the send contract.

A channel raises `TransientError` for what may pass (a timeout, a refused
connection, HTTP 5xx/429, SMTP 4xx), which is retried with backoff (retry.py),
and `PermanentError` for what will not (HTTP 4xx, SMTP 5xx, a channel that is
not configured), which ends in a `message.failed` receipt at once. Error texts
name codes and exception types only, never an address or a URL: they end up in
receipts and logs.
"""

from __future__ import annotations

from typing import Literal, Protocol

from rehabgate.services.notifier.contacts import Contact
from rehabgate.services.notifier.messages import Composed

ChannelName = Literal["stream", "email", "webhook"]


class DeliveryError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientError(DeliveryError):
    """May succeed if tried again."""


class PermanentError(DeliveryError):
    """Will not succeed however often it is tried."""


class ExternalChannel(Protocol):
    """A channel outside Redis. `send` must pass the message id as the idempotency
    key the receiver understands, so that a re-send after a crash is recognised."""

    name: ChannelName

    async def send(self, composed: Composed, contact: Contact) -> None: ...
