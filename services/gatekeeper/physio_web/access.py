"""Who may read: one token per clinic, and a physio sees only their clinic's clients.

Tokens come from settings (`REHABGATE_CLINIC_TOKENS`, JSON clinic id -> token).
A presented token is compared with every clinic's, always all of them, through
`hmac.compare_digest` on SHA-256 digests (equal lengths, so neither the token's
length nor which clinic matched shows in the timing). Tokens travel in an
`Authorization: Bearer` header or, for browsers, in an HttpOnly cookie set by the
sign-in form; never in a URL, where access logs and browser history keep it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from urllib.parse import unquote

from pydantic import SecretStr

COOKIE = "rehabgate_physio"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class ClinicAccess:
    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        self._tokens = {
            clinic: _digest(token.get_secret_value())
            for clinic, token in tokens.items()
            if token.get_secret_value()
        }

    def clinic_for(self, presented: str | None) -> str | None:
        """The clinic whose token this is, or None."""
        if not presented:
            return None
        given = _digest(presented)
        found = None
        for clinic, expected in self._tokens.items():
            if hmac.compare_digest(given, expected) and found is None:
                found = clinic
        return found


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The bearer token of a request (header first, then the sign-in cookie)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    try:
        cookie = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookie.get(COOKIE)
    return unquote(morsel.value) if morsel and morsel.value else None
