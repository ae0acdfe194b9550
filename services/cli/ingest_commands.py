"""`rehabgate ingest` (the HTTPS ingest service) and `rehabgate ingest-key` (its
per-clinic API keys: issue, revoke, list).

A key is printed once, when it is issued; Redis keeps only its SHA-256
(services/ingest/api_keys.py). Issuing and revoking need a Redis user that may
write `rehabgate:ingest:api-keys` (the `admin` user of the ACL file); the ingest's
own user may only read it.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, cast

from rehabgate.services.common.connections import sync_client
from rehabgate.services.common.settings import Settings

from .errors import CliError, redis_url


def configure_key(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="issue a clinic's API key (printed once)")
    issue.add_argument("clinic", help="the clinic id the key publishes for")
    revoke = actions.add_parser("revoke", help="revoke an API key: refused from now on")
    revoke.add_argument("key_id", help="the key id (the 16 hex digits after rgk_)")
    actions.add_parser("list", help="key ids with their clinic and issue time (no secrets)")


def key_command(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import TypeAdapter, ValidationError

    from rehabgate.services.common.clinics import ClinicId
    from rehabgate.services.ingest.api_keys import KEYS_HASH, new_key

    command = f"rehabgate ingest-key {args.action}"
    url = redis_url(settings.redis_url, command)
    client = sync_client(url, settings.redis_cluster)
    try:
        if args.action == "issue":
            if settings.clinics and args.clinic not in settings.clinics:
                raise CliError(
                    f"{command}: clinic {args.clinic} is not in REHABGATE_CLINICS "
                    f"({', '.join(sorted(settings.clinics))})"
                )
            try:
                TypeAdapter(ClinicId).validate_python(args.clinic)
            except ValidationError:
                raise CliError(f"{command}: {args.clinic!r} is not a clinic id") from None
            issued, record = new_key(args.clinic)
            client.hset(KEYS_HASH, issued.key_id, record)
            print(f"key id {issued.key_id} for clinic {issued.clinic_id} (shown once, keep it):")
            print(issued.key)
            return 0
        if args.action == "revoke":
            if not client.hdel(KEYS_HASH, args.key_id):
                raise CliError(f"{command}: no key {args.key_id}")
            print(f"revoked key {args.key_id}")
            return 0
        rows = cast(dict[bytes, bytes], client.hgetall(KEYS_HASH))
        for key_id, raw in sorted(rows.items()):
            row: dict[str, Any] = json.loads(raw)
            print(f"{key_id.decode()}  {row.get('clinic_id')}  issued {row.get('issued_at')}")
        return 0
    finally:
        client.close()


def ingest_command(args: argparse.Namespace, settings: Settings) -> int:
    from rehabgate.services.ingest.app import serve

    if not settings.redis_url:
        raise CliError("rehabgate ingest: set REDIS_URL (or use `rehabgate up`)")
    try:
        serve(settings)
    except KeyboardInterrupt:
        return 0
    return 0
