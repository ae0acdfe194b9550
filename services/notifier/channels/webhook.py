"""Webhooks signed per the Standard Webhooks scheme (standardwebhooks.com).

Each POST carries `webhook-id` (the message id, which is the first decision's
id: the receiver's idempotency key, the same on every re-send), a
`webhook-timestamp` (seconds, fresh per try so receivers can reject stale
replays) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
keyed with the clinic's secret. The URL and secret are per clinic, from
settings; a client's contact `address` is only passed along as `recipient`
(e.g. the clinic app's user handle), never used as a URL.

Outcomes: 2xx delivered; 408, 425, 429, 5xx and network errors transient;
anything else (4xx, redirects, which are not followed) permanent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping

import httpx

from rehabgate.services.common.settings import WebhookEndpoint
from rehabgate.services.notifier.contacts import Contact
from rehabgate.services.notifier.messages import Composed

from .base import ChannelName, PermanentError, TransientError

TRANSIENT_STATUS = frozenset({408, 425, 429})


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def payload(composed: Composed, contact: Contact) -> bytes:
    """The JSON body: the Standard Webhooks envelope `{type, timestamp, data}`."""
    message = composed.message
    data = {**message.model_dump(mode="json"), "recipient": contact.address.get_secret_value()}
    envelope = {
        "type": "client.message",
        "timestamp": message.created_at.isoformat(),
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookChannel:
    name: ChannelName = "webhook"

    def __init__(
        self,
        endpoints: Mapping[str, WebhookEndpoint],
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._endpoints = dict(endpoints)
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def serves(self, clinic_id: str) -> bool:
        return clinic_id in self._endpoints

    async def send(self, composed: Composed, contact: Contact) -> None:
        endpoint = self._endpoints.get(composed.message.clinic_id)
        if endpoint is None:
            raise PermanentError("webhook channel not configured for this clinic")
        body = payload(composed, contact)
        message_id = str(composed.message.message_id)
        timestamp = int(self._clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(endpoint.key(), message_id, timestamp, body),
        }
        try:
            response = await self._client.post(str(endpoint.url), content=body, headers=headers)
        except httpx.TransportError as exc:
            raise TransientError(f"webhook {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in TRANSIENT_STATUS or status >= 500:
            raise TransientError(f"webhook http {status}")
        raise PermanentError(f"webhook http {status}")

    async def close(self) -> None:
        await self._client.aclose()
