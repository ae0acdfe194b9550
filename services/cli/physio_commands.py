"""`rehabgate physio add|revoke|list`: per-physio sign-in credentials for the physio
pages, kept hashed in the file `REHABGATE_PHYSIO_CREDENTIALS` names (see
services/gatekeeper/physio_web/credentials.py for why a file). `add` prints the new
password once; `add` for an existing physio issues a new one and ends their
sessions; `revoke` ends a physio's access at their next request."""

from __future__ import annotations

import argparse
from pathlib import Path

from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.physio_web.credentials import CredentialsError, CredentialsFile

from .errors import CliError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--file", type=Path, help="credentials file (default: REHABGATE_PHYSIO_CREDENTIALS)"
    )
    actions = parser.add_subparsers(dest="physio_action", required=True)
    add = actions.add_parser("add", help="issue a physio's credentials (prints the password once)")
    add.add_argument("physio_id", help="the physio's id, e.g. anna.berg")
    add.add_argument("--clinic", required=True, help="the clinic the physio works for")
    add.add_argument(
        "--sso", action="store_true", help="no password: signs in through the SSO proxy only"
    )
    revoke = actions.add_parser("revoke", help="end a physio's access")
    revoke.add_argument("physio_id", help="the id of the physio whose sign-in ends")
    actions.add_parser("list", help="physios and their clinics (never a password)")


def command(args: argparse.Namespace, settings: Settings) -> int:
    path = args.file or settings.physio_credentials
    if path is None:
        raise CliError("rehabgate physio: set REHABGATE_PHYSIO_CREDENTIALS (or pass --file)")
    store = CredentialsFile(path)
    try:
        if args.physio_action == "add":
            password = store.issue(args.physio_id, args.clinic, sso_only=args.sso)
            print(f"physio {args.physio_id} (clinic {args.clinic}) added to {path}")
            if password:
                print(f"password (shown once): {password}")
        elif args.physio_action == "revoke":
            if not store.revoke(args.physio_id):
                raise CliError(f"rehabgate physio revoke: no physio {args.physio_id}")
            print(f"physio {args.physio_id} revoked")
        else:
            for physio in store.physios().values():
                how = "single sign-on" if physio.sso_only else "password"
                print(f"{physio.physio_id}\t{physio.clinic_id}\t{how}\t{physio.created_at}")
    except CredentialsError as exc:
        raise CliError(f"rehabgate physio: {exc}") from None
    return 0
