"""Clinics as tenants: the per-clinic settings (`REHABGATE_CLINICS`, JSON).

`{"clinic-a": {"require_signature": true, "keys": ["<base64 secret>"]}}`. With
any clinic configured, each clinic publishes to its own stream
`rehabgate:inbound:<clinic_id>` and the gatekeeper takes the clinic of an event
from that stream, never from the payload. Keys are HMAC-SHA256 secrets for
signed events; two may be valid at once while a clinic rotates its key.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from rehabgate.schemas.signing import SigningError, decode_key
from rehabgate.schemas.streams import RESERVED_CLINIC_IDS

# The envelope's pseudonymous-id pattern: also safe inside a Redis key, an ACL key
# pattern (no glob characters) and an ACL user name (no spaces).
_CLINIC_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")


def _clinic_id(value: str) -> str:
    if not _CLINIC_ID.match(value) or value in RESERVED_CLINIC_IDS:
        raise ValueError(f"{value!r} is not a usable clinic id")
    return value


ClinicId = Annotated[str, AfterValidator(_clinic_id)]


class ClinicConfig(BaseModel):
    """One clinic's inbound policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    require_signature: bool = False
    keys: list[SecretStr] = Field(
        default_factory=list,
        max_length=4,
        description="HMAC secrets (base64, optionally whsec_-prefixed); two while rotating.",
    )

    @field_validator("keys")
    @classmethod
    def _usable_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for key in keys:
            try:
                decode_key(key.get_secret_value())
            except SigningError as exc:
                raise ValueError(str(exc)) from None
        return keys

    @model_validator(mode="after")
    def _keys_when_required(self) -> ClinicConfig:
        if self.require_signature and not self.keys:
            raise ValueError("require_signature needs at least one key")
        return self

    def hmac_keys(self) -> tuple[bytes, ...]:
        return tuple(decode_key(k.get_secret_value()) for k in self.keys)
