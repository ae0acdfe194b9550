"""`rehabgate export fhir CLIENT [--out FILE] [--base URL] [--bundle transaction|collection]`:
one client as a FHIR R4 Bundle: a transaction of conditional updates an EHR imports
(importing it twice creates nothing twice), or a collection for archives.

Every Bundle is validated against the FHIR R4B models (fhir.resources) before it is
written; an invalid one is refused (exit 1) and nothing is written.

Reads the client's state and audit trail in one transaction (audit/reading.py, as
`rehabgate history` does), refuses a trail whose hash chain is broken (an export is
a record handed to another system: it must be the record rehabgate holds), and
leaves the mapping itself to the pure `gatekeeper/fhir_export.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from rehabgate.services.common.connections import async_client
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.audit.reading import ClientAudit, read_client
from rehabgate.services.gatekeeper.audit.verify import verify_chain
from rehabgate.services.gatekeeper.fhir_export import (
    CANONICAL_BASE,
    export_bundle,
    transaction_bundle,
    validation_problems,
)
from rehabgate.services.gatekeeper.protocol_files import load_protocols

from .errors import CliError, redis_url


def configure(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", required=True)
    fhir = formats.add_parser("fhir", help="a client as a FHIR R4 Bundle (JSON)")
    fhir.add_argument("client", help="the client id")
    fhir.add_argument("--out", type=Path, help="write to FILE instead of standard output")
    fhir.add_argument("--base", default=CANONICAL_BASE, help="canonical base URL")
    fhir.add_argument(
        "--bundle",
        choices=["collection", "transaction"],
        default="collection",
        help="transaction: conditional updates an EHR imports, idempotently; "
        "collection: a record for archives",
    )


async def _read(url: str, settings: Settings, keys: ClientKeys) -> ClientAudit:
    redis = async_client(url, settings.redis_cluster)
    try:
        return await read_client(redis, keys)
    finally:
        await redis.aclose()


def command(args: argparse.Namespace, settings: Settings) -> int:
    url = redis_url(settings.redis_url, "rehabgate export fhir")
    audit = asyncio.run(_read(url, settings, ClientKeys.of(args.client, settings.partitions)))
    if audit.state is None:
        raise CliError(f"rehabgate export fhir: no client {args.client}")
    verdict = verify_chain(audit.entries, audit.head)
    if not verdict.ok:
        print(f"export: the audit trail of {args.client} is broken; "
              f"run `rehabgate audit verify {args.client}`", file=sys.stderr)  # fmt: skip
        return 1
    protocols = load_protocols(settings.protocol_dirs)
    if audit.state.protocol not in protocols:
        raise CliError(f"rehabgate export fhir: protocol {audit.state.protocol} is not loaded")
    bundle = export_bundle(
        audit.state,
        [e.entry for e in audit.entries],
        protocols[audit.state.protocol],
        base=args.base.rstrip("/"),
        timestamp=datetime.now(UTC),
    )
    if args.bundle == "transaction":
        bundle = transaction_bundle(bundle, args.base.rstrip("/"))
    if problems := validation_problems(bundle):
        print(f"export: the {args.bundle} Bundle of {args.client} is not valid FHIR R4B; "
              f"nothing written: {'; '.join(problems[:5])}", file=sys.stderr)  # fmt: skip
        return 1
    text = json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}: {len(bundle['entry'])} resources", file=sys.stderr)
    return 0
