"""Least privilege in Redis: the ACL file `rehabgate acl generate` writes.

One user per clinic, which may only XADD to its own inbound stream; one per
service with exactly the commands and key patterns its code issues (read from
the code: the services' own calls, their Lua scripts, which run with the
caller's permissions, and FastStream's XREADGROUP / XAUTOCLAIM / XACK / XGROUP
CREATE); an admin user for operators (erase, dlq, trim, ACL LOG); and the
`default` user switched off, so nothing connects without a name and password.
Passwords are stored as SHA-256 (`#<hex>`), so the ACL file itself holds no secret.

The trim loophole: a user allowed XADD can also pass `MAXLEN`/`MINID` and trim
the stream, and ACLs cannot forbid those options. Each clinic has its own stream,
so a clinic can only ever trim its own unread events, never another clinic's.
Clinics outside the trusted network should not hold Redis users at all, but
publish through the HTTPS ingest (services/ingest), whose own `ingest` user writes
their streams with plain XADDs; `ingest_only=True` (`acl generate --ingest-only`)
writes no clinic users at all, so no clinic credential reaches Redis and the trim
hole is closed (README, "Security model").

Write-only (`%W~`) suffices for a key a service only XADDs to directly; a key
passed to a Lua script (EVAL/EVALSHA) needs read and write (`~`), whatever the
script does with it, so the streams the atomic steps append to are `~`.

Key patterns are globs over every partition (`{p*}`), so the file does not change
with `REHABGATE_PARTITIONS`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rehabgate.schemas.streams import (
    INBOUND,
    INBOUND_DEAD_LETTER,
    PREFIX,
    SECURITY_EVENTS,
    clinic_inbound_stream,
)

from .heartbeat import heartbeat_key, started_key

GATEKEEPER, NOTIFIER, AUDIT, ADMIN = "gatekeeper", "notifier", "audit", "admin"
INGEST = "ingest"
SERVICE_USERS = (GATEKEEPER, NOTIFIER, AUDIT, INGEST)
#: The ingest's API keys (services/ingest/api_keys.py; written by `admin` only).
INGEST_KEYS = f"{PREFIX}:ingest:api-keys"
CLINIC_USER_PREFIX = "clinic."

_P = f"{PREFIX}:{{p*}}"
# Every connection of redis-py >= 5 / FastStream sends CLIENT SETINFO (Redis >= 7.2);
# refused, it would fill ACL LOG with noise that hides real refusals.
_CONNECT_72 = "+client|setinfo"
_CONSUME = (
    "+xreadgroup +xack +xautoclaim +xclaim +xpending +xgroup|create +xgroup|delconsumer "
    "+xinfo|consumers +xinfo|groups +xtrim +exists +time +xadd"
)
_SCRIPTS = "+eval +evalsha +script|load +script|exists"


def clinic_user(clinic_id: str) -> str:
    return f"{CLINIC_USER_PREFIX}{clinic_id}"


def _ingest_rule(base: str, clinics: list[str]) -> str:
    """The ingest: its accept step (a Lua script: every key it touches is `~`) on the
    clinics' streams (the shared one without clinics) and its records beside them;
    reading what a fate needs; the API keys read-only. No XTRIM, XDEL, DEL."""
    streams = [clinic_inbound_stream(c) for c in clinics] or [INBOUND]
    keys = " ".join(f"~{s} ~{{{s}}}:ingested:*" for s in streams)
    return (
        f"{base} +ping +time {_SCRIPTS} +xadd +hset +hmget +expire +hget +hgetall +hexists "
        f"+exists +sismember +xrange +xinfo|groups +xpending {keys} "
        f"%R~{INBOUND_DEAD_LETTER} %R~{{{INBOUND_DEAD_LETTER}}}:lettered:* "
        f"%R~{_P}:client:* %R~{INGEST_KEYS}"
    )


def _rules(clinics: Iterable[str], connect: str, ingest_only: bool = False) -> dict[str, str]:
    """User -> its ACL rules (everything but the password)."""
    base = f"resetkeys resetchannels -@all {connect}".rstrip()
    ordered = sorted(clinics)
    users = {
        clinic_user(c): f"{base} +xadd %W~{clinic_inbound_stream(c)}"
        for c in ([] if ingest_only else ordered)
    }
    users[INGEST] = _ingest_rule(base, ordered)
    users[GATEKEEPER] = (
        f"{base} +ping {_CONSUME} {_SCRIPTS} +xrange +hget +hmget +hset +hdel +hgetall +hkeys "
        "+smismember +sismember +sadd +get +set +scan +multi +exec "
        f"~{INBOUND} ~{INBOUND}:* ~{_P}:client:* ~{_P}:evaluated %W~{SECURITY_EVENTS} "
        f"~{heartbeat_key(GATEKEEPER)} ~{started_key(GATEKEEPER)} "
        f"~{{{INBOUND_DEAD_LETTER}}}:lettered:*"
    )
    users[NOTIFIER] = (
        f"{base} +ping {_CONSUME} {_SCRIPTS} +hget +hmget +hset +hdel +hgetall +hincrby "
        "+zadd +zrem +zscore +zrangebyscore +del "
        f"~{_P}:evaluated ~{_P}:evaluated:dead-letter ~{_P}:evaluated:dead-letter:lettered:* "
        f"~{_P}:delivery-ledger ~{_P}:outbox:* "
        f"~{_P}:client-messages ~{_P}:receipts ~{_P}:physio-alerts "
        f"%R~{_P}:client:*:contact ~{heartbeat_key(NOTIFIER)} ~{started_key(NOTIFIER)}"
    )
    users[AUDIT] = (
        f"{base} +ping +hget +hmget +xrange +xrevrange +xlen +scan +multi +exec +exists "
        f"%R~{_P}:client:* %R~{_P}:erasures*"
    )
    users[ADMIN] = "~* &* +@all"
    return users


@dataclass(frozen=True)
class AclFile:
    """The file's text and every user's password (given or generated)."""

    text: str
    passwords: Mapping[str, str]
    generated: tuple[str, ...]


def generate(
    clinics: Iterable[str],
    given: Mapping[str, str],
    redis_version: tuple[int, int] = (7, 2),
    ingest_only: bool = False,
) -> AclFile:
    """The ACL file for these clinics. `given`: user -> password; every other user
    gets a fresh random one. `redis_version`: Redis 7.0 knows no CLIENT SETINFO, and
    refuses an ACL file that names it. `ingest_only`: no clinic users; clinics post
    to the HTTPS ingest, and only its user writes their streams."""
    connect = _CONNECT_72 if redis_version >= (7, 2) else ""
    rules = _rules(clinics, connect, ingest_only)
    passwords = {user: given.get(user) or secrets.token_urlsafe(32) for user in rules}
    lines = [  # an ACL file has no comment syntax: users only
        "user default off resetpass resetkeys resetchannels -@all",
        *(
            f"user {user} on #{hashlib.sha256(passwords[user].encode()).hexdigest()} {rule}"
            for user, rule in rules.items()
        ),
    ]
    return AclFile(
        "\n".join(lines) + "\n",
        passwords,
        tuple(user for user in rules if not given.get(user)),
    )


def env_name(user: str) -> str:
    """The variable an env file holds a user's password in: `REDIS_PASSWORD_GATEKEEPER`,
    `REDIS_PASSWORD_CLINIC_CLINIC_A` (compose.yaml reads the service ones)."""
    return "REDIS_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", user).upper()


def env_file(passwords: Mapping[str, str]) -> str:
    """Every password as `NAME=value` lines (docker compose --env-file reads them)."""
    names = {user: env_name(user) for user in passwords}
    if len(set(names.values())) < len(names):
        raise ValueError("two user names map to the same variable; rename a clinic")
    return "".join(f"{names[user]}={password}\n" for user, password in passwords.items())
