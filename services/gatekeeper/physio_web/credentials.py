"""Per-physio sign-in credentials: one line per person, hashed, in a file.

`rehabgate physio add|revoke|list` (services/cli/physio_commands.py) writes the
file named by `REHABGATE_PHYSIO_CREDENTIALS`; the gatekeeper reads it. A file (as
an htpasswd file is) rather than a Redis key because:

- it belongs with the other secrets an operator manages (mounted read-only into
  the gatekeeper's container, backed up with them), not with health data that
  erasure and retention touch;
- the gatekeeper's Redis user needs no new rights, and a clinic's Redis user can
  never read or write it;
- a revoke takes effect at the next request: the gatekeeper re-reads the file
  when its modification time changes, and every session is checked against it.

Passwords are random (the command prints one once) and kept only as scrypt
hashes (standard library, per-entry salt). Each entry carries a `generation`:
issuing a new password for the same physio ends the sessions of the old one.
A physio who signs in through a single-sign-on proxy has an entry without a
password: it says which clinic they belong to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_N, _R, _P = 2**14, 8, 1
_DUMMY_SALT = b"rehabgate-no-such-physio"


class CredentialsError(Exception):
    """The credentials file cannot be read or written (names the reason, never a secret)."""


@dataclass(frozen=True)
class Physio:
    physio_id: str
    clinic_id: str
    created_at: str
    generation: str
    password_hash: str | None = None

    @property
    def sso_only(self) -> bool:
        return self.password_hash is None


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_matches(password: str, stored: str | None) -> bool:
    """Constant-time check; an unknown physio costs the same scrypt as a known one."""
    if stored is None:
        hash_password(password, _DUMMY_SALT)
        return False
    try:
        scheme, n, salt_b64, digest_b64 = stored.split("$")
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    if scheme != "scrypt" or n != str(_N):
        return False
    given = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=len(expected))
    return hmac.compare_digest(given, expected)


def _load(path: Path) -> dict[str, Physio]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"{path}: {type(exc).__name__}") from None
    physios = raw.get("physios") if isinstance(raw, dict) else None
    if not isinstance(physios, dict):
        raise CredentialsError(f"{path}: not a physio credentials file")
    found = {}
    for physio_id, entry in physios.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("clinic_id"), str):
            raise CredentialsError(f"{path}: entry {physio_id!r} is malformed")
        found[physio_id] = Physio(
            physio_id=physio_id,
            clinic_id=entry["clinic_id"],
            created_at=str(entry.get("created_at", "")),
            generation=str(entry.get("generation", "")),
            password_hash=entry.get("password_hash"),
        )
    return found


class CredentialsFile:
    """The file, read again whenever it changed on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._physios: dict[str, Physio] = {}

    def physios(self) -> dict[str, Physio]:
        if self.path is None:
            return {}
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            self._stamp, self._physios = None, {}
            return {}
        if stamp != self._stamp:
            self._physios, self._stamp = _load(self.path), stamp
        return self._physios

    def get(self, physio_id: str) -> Physio | None:
        return self.physios().get(physio_id)

    def check(self, physio_id: str, password: str) -> Physio | None:
        """The physio these credentials sign in, or None (always one scrypt)."""
        physio = self.get(physio_id)
        if not password_matches(password, physio.password_hash if physio else None):
            return None
        return physio

    # --- writes, for the command line ---------------------------------------------

    def issue(self, physio_id: str, clinic_id: str, sso_only: bool = False) -> str | None:
        """Add a physio (or replace their password); returns the new password, shown
        once (None for a single-sign-on physio)."""
        password = None if sso_only else secrets.token_urlsafe(18)
        physios = dict(self.physios())
        physios[physio_id] = Physio(
            physio_id=physio_id,
            clinic_id=clinic_id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            generation=secrets.token_hex(8),
            password_hash=hash_password(password) if password else None,
        )
        self._write(physios)
        return password

    def revoke(self, physio_id: str) -> bool:
        physios = dict(self.physios())
        if physios.pop(physio_id, None) is None:
            return False
        self._write(physios)
        return True

    def _write(self, physios: dict[str, Physio]) -> None:
        if self.path is None:
            raise CredentialsError("no credentials file configured")
        document: dict[str, Any] = {
            "version": 1,
            "physios": {
                p.physio_id: {
                    "clinic_id": p.clinic_id,
                    "created_at": p.created_at,
                    "generation": p.generation,
                    **({"password_hash": p.password_hash} if p.password_hash else {}),
                }
                for p in sorted(physios.values(), key=lambda p: p.physio_id)
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(prefix=".physios-", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=2)
                out.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._stamp = None
