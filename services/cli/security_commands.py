"""`rehabgate acl generate` and `rehabgate erase`: the operator's security commands.

`acl generate` writes the Redis ACL file (services/common/acl.py) for the
clinics in `REHABGATE_CLINICS`, with the passwords of `REHABGATE_ACL_PASSWORDS`
and fresh random ones for every other user. The ACL file holds only SHA-256
hashes; the passwords go to `<FILE>.env` (mode 0600), which docker compose reads
with `--env-file`, together with `REHABGATE_CLINICS` for the gatekeeper; hand each
clinic its own password and keep the file out of version control. Nothing secret
is printed.

`erase CLIENT` removes the client's health data and contact details everywhere
and records the erasure (services/common/erasure.py); `erase --verify` checks
every partition's erasure ledger. Both need a Redis user that may touch every
key (the `admin` user of the ACL file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from pathlib import Path

from rehabgate.services.common.acl import env_file, generate
from rehabgate.services.common.connections import async_client
from rehabgate.services.common.settings import Settings

from .erasure import erase_client, verify_erasures
from .errors import BAD_FILE, CliError, redis_url

_TICKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def configure_acl(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    gen = actions.add_parser("generate", help="write the Redis ACL file (one user per clinic)")
    gen.add_argument("--out", type=Path, default=Path("rehabgate.acl"), help="the ACL file")
    gen.add_argument(
        "--redis-version", default="7.2", help="server version MAJOR.MINOR (7.0 lacks SETINFO)"
    )
    gen.add_argument(
        "--ingest-only",
        action="store_true",
        help="no clinic users: clinics post to the HTTPS ingest, whose user alone writes "
        "their streams (closes the XADD MAXLEN trim hole)",
    )


def acl_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        major, minor = (int(part) for part in args.redis_version.split(".")[:2])
    except ValueError:
        raise CliError(
            f"rehabgate acl generate: --redis-version {args.redis_version!r}: expected e.g. 7.2"
        ) from None
    if args.out.is_dir():
        raise CliError(f"rehabgate acl generate: --out {args.out} is a directory", BAD_FILE)
    try:  # a secrets directory of its own is the usual place: make it, private
        args.out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"rehabgate acl generate: cannot create {args.out.parent}: {exc.strerror}", BAD_FILE
        ) from None
    given = {user: pw.get_secret_value() for user, pw in settings.acl_passwords.items()}
    acl = generate(settings.clinics, given, (major, minor), ingest_only=args.ingest_only)
    out: Path = args.out
    secrets_path = out.with_name(out.name + ".env")
    out.write_text(acl.text)
    descriptor = os.open(secrets_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(env_file(acl.passwords))
        handle.write(f"REHABGATE_CLINICS='{_clinics_json(settings)}'\n")
        handle.write(f"REHABGATE_ACL_FILE={out.resolve()}\n")  # compose mounts this one
    os.chmod(secrets_path, 0o600)  # also when the file existed with wider permissions
    print(f"wrote {out}: {len(acl.passwords)} users, default user off, passwords as SHA-256")
    print(
        f"wrote {secrets_path} (mode 0600): every user's password as REDIS_PASSWORD_<USER>, "
        "and REHABGATE_CLINICS (with the signing keys) for the gatekeeper"
    )
    if acl.generated:
        print(f"generated passwords for: {', '.join(acl.generated)}")
    if args.ingest_only:
        print("ingest only: no clinic users; clinics publish through `rehabgate ingest`")
    elif not settings.clinics:
        print("note: no clinics configured (REHABGATE_CLINICS); no clinic users written")
    return 0


def _clinics_json(settings: Settings) -> str:
    """REHABGATE_CLINICS as the gatekeeper needs it (keys revealed: this goes to the
    0600 file only)."""
    return json.dumps(
        {
            clinic: {
                "require_signature": config.require_signature,
                "keys": [key.get_secret_value() for key in config.keys],
            }
            for clinic, config in settings.clinics.items()
        }
    )


def configure_erase(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("client", nargs="?", help="the client id to erase")
    which.add_argument("--verify", action="store_true", help="check every erasure ledger")
    parser.add_argument("--ticket", help="your request reference, kept in the erasure record")


def erase_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.ticket is not None and not _TICKET.match(args.ticket):
        raise CliError(
            "rehabgate erase: --ticket must be an id (letters, digits, _ . : -), not free text"
        )
    url = redis_url(settings.redis_url, "rehabgate erase")
    return asyncio.run(_erase(url, settings, args))


async def _erase(url: str, settings: Settings, args: argparse.Namespace) -> int:
    redis = async_client(url, settings.redis_cluster)
    try:
        if args.verify:
            broken = 0
            for partition in range(settings.partitions):
                verdict = await verify_erasures(redis, partition)
                broken += not verdict.ok
                state = "OK" if verdict.ok else f"BROKEN ({verdict.broken})"
                print(f"{state:6}  erasure ledger p{partition}: {verdict.entries} erasures")
            return 1 if broken else 0
        erasure = await erase_client(redis, args.client, settings.partitions, args.ticket)
    finally:
        await redis.aclose()
    if erasure.record_id is None and not erasure.removed:
        raise CliError(f"rehabgate erase: nothing of client {args.client} found")
    removed = ", ".join(f"{name} {n}" for name, n in sorted(erasure.removed.items()))
    print(f"erased client {args.client} (clinic {erasure.clinic_id or 'unknown'}): {removed}")
    if erasure.record_id:
        print(f"recorded as erasure {erasure.record_id} in the partition's erasure ledger")
    return 0
