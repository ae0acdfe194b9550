"""`rehabgate audit verify CLIENT|--all` and `rehabgate history CLIENT [--json|--csv]`.

Both read a client's state and audit stream in one transaction (audit/reading.py)
and hand them to the pure verifier and timeline builder, so the command line and
the physio pages can never disagree about a client's history.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from rehabgate.services.common.connections import async_client
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.audit.export import history_page, table_lines, to_csv
from rehabgate.services.gatekeeper.audit.history import build_timeline
from rehabgate.services.gatekeeper.audit.reading import (
    ClientAudit,
    UnreadableClient,
    client_keys,
    read_client,
)
from rehabgate.services.gatekeeper.audit.verify import Verdict, verify_chain

from .errors import CliError, redis_url


def configure_audit(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="recompute hash chains; exit 1 if any is broken")
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("client", nargs="?", help="one client id")
    which.add_argument("--all", action="store_true", help="every client (SCAN)")


def configure_history(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", help="the client id")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the timeline as one JSON document")
    form.add_argument("--csv", action="store_true", help="one CSV row per audit entry")


def verdict_line(audit: ClientAudit, verdict: Verdict) -> str:
    broken = verdict.broken
    if broken is None:
        return f"OK      {audit.client_id}: {verdict.entries} entries, chain head matches"
    at = f"entry seq {broken.seq}" if broken.seq is not None else "the first entry"
    entry = f" ({broken.entry_id})" if broken.entry_id else ""
    return f"BROKEN  {audit.client_id}: {broken.kind} at {at}{entry}: {broken.detail}"


async def _verify(url: str, settings: Settings, client: str | None) -> int:
    redis = async_client(url, settings.redis_cluster)
    try:
        if client is not None:
            keys = [ClientKeys.of(client, settings.partitions)]
        else:
            keys = await client_keys(redis)
        broken = 0
        for key in keys:
            try:
                audit = await read_client(redis, key)
            except UnreadableClient as unreadable:
                print(f"BROKEN  {unreadable.client_id}: unreadable: {unreadable.reason}")
                broken += 1
                continue
            if not audit.exists:
                raise CliError(f"rehabgate audit verify: no client {key.client_id}")
            verdict = verify_chain(audit.entries, audit.head)
            broken += not verdict.ok
            print(verdict_line(audit, verdict))
    finally:
        await redis.aclose()
    if client is None:
        print(f"{len(keys)} clients checked, {broken} broken")
    return 1 if broken else 0


async def _history(url: str, settings: Settings, args: argparse.Namespace) -> int:
    redis = async_client(url, settings.redis_cluster)
    try:
        audit = await read_client(redis, ClientKeys.of(args.client, settings.partitions))
    finally:
        await redis.aclose()
    if not audit.exists:
        raise CliError(f"rehabgate history: no client {args.client}")
    timeline = build_timeline(audit.client_id, audit.entries)
    verdict = verify_chain(audit.entries, audit.head)
    if args.json:
        document = history_page(timeline, verdict, 1, max(len(timeline.items), 1))
        for paging in ("page", "per_page", "pages"):
            document.pop(paging)
        print(json.dumps(document, indent=2))
    elif args.csv:
        sys.stdout.write(to_csv(timeline))
    else:
        for line in table_lines(timeline, verdict):
            print(line)
    return 0


def audit_command(args: argparse.Namespace, settings: Settings) -> int:
    url = redis_url(settings.redis_url, "rehabgate audit verify")
    return asyncio.run(_verify(url, settings, None if args.all else args.client))


def history_command(args: argparse.Namespace, settings: Settings) -> int:
    url = redis_url(settings.redis_url, "rehabgate history")
    return asyncio.run(_history(url, settings, args))
