"""A client's contact preferences, read the way the gatekeeper stored them.

The gatekeeper keeps `client.contact.updated` (channel, address, locale, quiet
hours) as JSON in the client's own hash, apart from health data, so erasing
the hash erases the contact. The address is a `SecretStr`: it prints as stars
in any repr, log line or traceback, so it can only leave through a channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, StringConstraints, ValidationError

from rehabgate.schemas.inbound import QuietHours
from rehabgate.services.common.connections import RedisClient
from rehabgate.services.common.keys import ClientKeys

CONTACT_FIELD = "contact"


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    channel: Literal["stream", "email", "webhook"]
    address: SecretStr
    locale: Annotated[str, StringConstraints(max_length=16)] = "en"
    quiet_hours: QuietHours | None = None


async def read_contacts(
    redis: RedisClient, partition: int, client_ids: Iterable[str]
) -> dict[str, Contact | None]:
    """Every client's contact in one pipelined round trip; None for a client with
    none (or an unreadable one: such a client gets the default channel)."""
    ids = list(dict.fromkeys(client_ids))
    if not ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for client_id in ids:
        pipe.hget(ClientKeys(client_id, partition).contact, CONTACT_FIELD)
    found: dict[str, Contact | None] = {}
    for client_id, raw in zip(ids, await pipe.execute(), strict=True):
        try:
            found[client_id] = Contact.model_validate_json(raw) if raw else None
        except ValidationError:
            found[client_id] = None
    return found
