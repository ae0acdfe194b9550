"""The envelope every rehabgate event carries, inbound and outbound.

Clinic systems in any language publish these as JSON, so the models are the
contract: frozen, `extra="forbid"` (a typo in a field name is an error, not a
silently ignored value) and with aware timestamps only, because decisions are
computed from event time and a naive timestamp has no defined instant.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

SCHEMA_VERSION = 1

# Pseudonymous ids only: letters, digits, '_', '-', '.'; no '@' or spaces, so an
# e-mail address or a "First Last" name cannot pass as a client id.
PseudonymousId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")]


class WireModel(BaseModel):
    """Base for every wire model: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Envelope(WireModel):
    """Fields shared by every event; `event_id` is the idempotency key."""

    event_id: UUID
    schema_version: Annotated[int, Field(ge=1, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    occurred_at: AwareDatetime = Field(
        description="RFC 3339 timestamp with offset, when it happened at the clinic."
    )
    clinic_id: PseudonymousId
    client_id: PseudonymousId = Field(
        description="Pseudonymous client id: never a name, e-mail or phone number."
    )
    correlation_id: Annotated[str, StringConstraints(max_length=128)] | None = None
