"""Who is asking: a physio signed in as themself, or a program with a clinic token.

- **People** sign in with their own credentials (credentials.py) or arrive through
  a trusted single-sign-on proxy (oauth2-proxy style: the proxy authenticates and
  passes the user in a header). Either way they get a session cookie that is
  signed (HMAC-SHA256), `Secure`, `HttpOnly` and `SameSite=Strict`, holding the
  physio id, the clinic, the credential's generation and the time it was issued,
  never the password. Every request checks it against the credentials file, so a
  revoked physio is out at their next click. Only people can act (approve, hold,
  regress, override), and every action carries a CSRF token bound to the session.
- **Programs** read the JSON API with a clinic's read token
  (`REHABGATE_CLINIC_TOKENS`) in `Authorization: Bearer`; a token reads, never acts.
  Tokens are compared through `hmac.compare_digest` on SHA-256 digests, always all
  of them, so timing says nothing about which clinic matched.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from pydantic import SecretStr

from .credentials import CredentialsFile, Physio

COOKIE = "rehabgate_physio"


@dataclass(frozen=True)
class Identity:
    clinic_id: str
    #: The signed-in person; None for a program with a clinic token (read only).
    physio_id: str | None = None
    #: The session cookie's value (binds the CSRF token); None without a session.
    session: str | None = None


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
    """The bearer token of a request, if any."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def session_cookie(headers: Mapping[str, str]) -> str | None:
    try:
        cookie = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel and morsel.value else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signed session values and the CSRF tokens bound to them."""

    def __init__(self, secret: bytes, max_age_s: int, credentials: CredentialsFile) -> None:
        self._secret = secret
        self.max_age_s = max_age_s
        self.credentials = credentials

    def _mac(self, purpose: str, payload: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}|{payload}".encode(), "sha256").digest())

    def issue(self, physio: Physio, now: float | None = None) -> str:
        body = {
            "p": physio.physio_id,
            "c": physio.clinic_id,
            "g": physio.generation,
            "t": int(now if now is not None else time.time()),
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac('session', payload)}"

    def identity(self, value: str | None, now: float | None = None) -> Identity | None:
        """The physio a session value signs in, if it is genuine, young enough, and
        its physio still holds the same credential in the same clinic."""
        if not value or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            body = json.loads(_unb64(payload))
            physio_id, clinic, generation, issued = body["p"], body["c"], body["g"], body["t"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(issued, int) or (now or time.time()) - issued > self.max_age_s:
            return None
        physio = self.credentials.get(str(physio_id))
        if physio is None or physio.clinic_id != clinic or physio.generation != generation:
            return None
        return Identity(clinic_id=physio.clinic_id, physio_id=physio.physio_id, session=value)

    def csrf(self, session: str) -> str:
        return self._mac("csrf", session)

    def csrf_ok(self, session: str | None, presented: str | None) -> bool:
        if not session or not presented:
            return False
        return hmac.compare_digest(presented, self.csrf(session))

    def set_cookie(self, value: str) -> str:
        return (
            f"{COOKIE}={value}; Path=/physio; Secure; HttpOnly; SameSite=Strict; "
            f"Max-Age={self.max_age_s}"
        )

    @staticmethod
    def clear_cookie() -> str:
        return f"{COOKIE}=; Path=/physio; Secure; HttpOnly; SameSite=Strict; Max-Age=0"


class ProxyIdentity:
    """A single-sign-on proxy in front (oauth2-proxy style) names the user in a
    header. Believed only from the proxy: a peer address in `trusted` networks, or
    a request carrying the shared secret in `X-Rehabgate-Proxy-Secret`. The user
    must still have an entry in the credentials file (it names their clinic)."""

    SECRET_HEADER = "x-rehabgate-proxy-secret"  # noqa: S105 - a header name

    def __init__(
        self,
        header: str | None,
        trusted: Sequence[str],
        secret: SecretStr | None,
        credentials: CredentialsFile,
    ) -> None:
        self.header = header.lower() if header else None
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted]
        self.secret = _digest(secret.get_secret_value()) if secret else None
        self.credentials = credentials

    def physio(self, headers: Mapping[str, str], peer: str | None) -> Physio | None:
        if self.header is None or not (user := headers.get(self.header, "").strip()):
            return None
        if not self._from_proxy(headers, peer):
            return None
        return self.credentials.get(user)

    def _from_proxy(self, headers: Mapping[str, str], peer: str | None) -> bool:
        if self.secret is not None:
            presented = headers.get(self.SECRET_HEADER)
            if presented and hmac.compare_digest(_digest(presented), self.secret):
                return True
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)
