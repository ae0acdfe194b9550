"""The `rehabgate` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import redis

from rehabgate.services.common.settings import Settings, settings_or_exit

from . import (
    audit_commands,
    dead_letters,
    errors,
    fhir_command,
    ingest_commands,
    physio_commands,
    security_commands,
    trim,
)
from .errors import CliError
from .stack import URL_FILE


class Parser(argparse.ArgumentParser):
    """argparse with defaults shown in every help, and a bad argument as one line on
    stderr (argparse's own error prints the usage block too), exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(errors.USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown; the epilog (exit codes) kept as written."""


def build_parser() -> Parser:
    parser = Parser(prog="rehabgate", description=__doc__, epilog=errors.EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"rehabgate {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "up", help="run Redis (embedded unless REDIS_URL), gatekeeper and notifier until Ctrl-C",
        epilog=errors.EXIT_CODES,
    )  # fmt: skip
    demo = commands.add_parser("demo", help="a scripted clinic end to end; exits 0 when done")
    demo.add_argument(
        "--channel", choices=["stream", "email", "webhook"], default="stream",
        help="deliver the demo clients' messages through this channel (configure SMTP or "
        "webhooks with REHABGATE_* variables; see README)",
    )  # fmt: skip
    demo.add_argument(
        "--address", help="the demo clients' e-mail address or webhook recipient (for email)"
    )
    publish = commands.add_parser(
        "publish", help="check clinic events from a JSON file locally, publish them, print "
        "each one's fate", epilog=errors.EXIT_CODES,
    )  # fmt: skip
    publish.add_argument(
        "file", type=Path, help="one JSON object, a JSON array of them, or JSON lines"
    )
    publish.add_argument(
        "--wait", type=errors.seconds, default=10.0, help="seconds to wait for fates"
    )
    publish.add_argument(
        "--no-check", action="store_true",
        help="send events the local check refuses too (to see their dead letters)",
    )  # fmt: skip
    commands.add_parser("gatekeeper", help="run the gatekeeper service (needs REDIS_URL)")
    commands.add_parser("notifier", help="run the notifier service (needs REDIS_URL)")
    commands.add_parser("ingest", help="run the HTTPS ingest, POST /v1/events (needs REDIS_URL)")
    ingest_commands.configure_key(commands.add_parser("ingest-key", help="ingest API keys"))
    health = commands.add_parser("health", help="exit 0 if SERVICE is consuming")
    health.add_argument("service", choices=["gatekeeper", "notifier"], help="the service to check")
    dead_letters.configure(commands.add_parser("dlq", help="list or replay dead letters"))
    physio_commands.configure(commands.add_parser("physio", help="physio sign-in credentials"))
    commands.add_parser("trim", help="trim consumed, expired entries from the work streams")
    schemas = commands.add_parser("schemas", help="JSON Schema files of the contract")
    schemas.add_argument(
        "action", choices=["export", "check"],
        help="export: rewrite schemas/json; check: exit 1 if any file is stale",
    )  # fmt: skip
    protocol = commands.add_parser("protocol", help="check protocol files, simulate histories")
    protocol_commands = protocol.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = protocol_commands.add_parser("check", help="validate protocol files")
    check.add_argument(
        "paths", nargs="*", type=Path, help="protocol files or directories (besides the shipped)"
    )
    simulate = protocol_commands.add_parser("simulate", help="replay a history through a protocol")
    simulate.add_argument("protocol", help="the protocol as id@version")
    simulate.add_argument("--events", type=Path, required=True, help="JSON lines of one client")
    simulate.add_argument("--json", action="store_true", help="one JSON object per decision")
    replay = commands.add_parser("replay", help="a stored client's history under another version")
    replay.add_argument("client", help="the client id")
    replay.add_argument("--protocol", required=True, help="id@version to compare with")
    audit_commands.configure_audit(commands.add_parser("audit", help="verify audit hash chains"))
    audit_commands.configure_history(
        commands.add_parser("history", help="a client's audit trail as a timeline")
    )
    fhir_command.configure(commands.add_parser("export", help="export a client (FHIR R4)"))
    security_commands.configure_acl(commands.add_parser("acl", help="Redis users (ACL file)"))
    security_commands.configure_erase(
        commands.add_parser("erase", help="erase a client's health data and contact details")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings: Settings = settings_or_exit()  # invalid settings: one line per error, exit 2
    command = " ".join(str(part) for part in (args.command, getattr(args, "action", None)) if part)
    return errors.guarded(
        f"rehabgate {command}",
        lambda: settings.redis_url or _up_url(),
        lambda: int(COMMANDS[args.command](args, settings) or 0),
    )


def _version() -> str:
    try:
        return version("rehabgate")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _up_url() -> str | None:
    return URL_FILE.read_text().strip() if URL_FILE.is_file() else None


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from .stack import run_up

    return run_up(settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    if args.channel == "email" and not args.address:
        raise CliError("rehabgate demo: --channel email needs --address you@example.org")
    return run_demo(settings, channel=args.channel, address=args.address)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from .publish import publish

    url = errors.redis_url(settings.redis_url, "rehabgate publish")
    return publish(url, args.file, settings, args.wait, check=not args.no_check)


def _service(args: argparse.Namespace, settings: Settings) -> int:
    # Both are ASGI apps: the gatekeeper serves the physio pages, both health and metrics.
    if not settings.redis_url:
        raise CliError(f"rehabgate {args.command}: set REDIS_URL (or use `rehabgate up`)")
    _redis_answers(settings, f"rehabgate {args.command}")
    if args.command == "gatekeeper":
        from rehabgate.services.gatekeeper.app import create_app as gatekeeper_app

        run = gatekeeper_app(settings).run
    else:
        from rehabgate.services.notifier.app import create_app as notifier_app

        run = notifier_app(settings).run
    from rehabgate.services.common.lifecycle import ConsumerGroupLost

    try:
        asyncio.run(run())
    except ConsumerGroupLost as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _redis_answers(settings: Settings, command: str) -> None:
    """PING before a service starts, so an unreachable Redis is one line, not a
    start-up failure among the service's log lines."""
    from rehabgate.services.common.connections import sync_client

    assert settings.redis_url is not None
    client = sync_client(settings.redis_url, settings.redis_cluster, socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.AuthenticationError, redis.exceptions.NoPermissionError, redis.ResponseError):
        return  # it answers; the service names what it may not do
    finally:
        client.close()


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from .health import check

    if not settings.redis_url:
        raise CliError("rehabgate health: set REDIS_URL")
    ok, detail = check(settings.redis_url, args.service, os.environ.get("REHABGATE_CONSUMER"),
                      cluster=settings.redis_cluster)  # fmt: skip
    if detail.startswith("redis unreachable"):
        where = errors.shown_url(settings.redis_url)
        raise CliError(f"rehabgate health: Redis unreachable at {where}", errors.REDIS)
    if not ok:
        raise CliError(f"rehabgate health: {detail}", errors.FOUND_PROBLEM)
    print(detail)
    return 0


def _schemas(args: argparse.Namespace, settings: Settings) -> int:
    from .schema_files import export, stale

    if args.action == "export":
        for path in export():
            print(f"wrote {path}")
        return 0
    outdated = stale()
    for name in outdated:
        print(f"stale: schemas/json/{name} (run `rehabgate schemas export`)")
    return 1 if outdated else 0


def _protocol(args: argparse.Namespace, settings: Settings) -> int:
    from rehabgate.services.gatekeeper.protocol_files import (
        ProtocolFileError,
        load_protocol,
        load_protocols,
    )

    from .protocol_tools import HistoryError, read_history, render, simulate

    command = f"rehabgate protocol {args.action}"
    paths: list[Path] = getattr(args, "paths", [])
    for path in paths:
        if not path.exists():
            raise CliError(f"{command}: {path} not found", errors.BAD_FILE)
    files = [p for p in paths if p.is_file()]
    dirs = [p for p in paths if not p.is_file()]
    try:
        protocols = dict(load_protocols([*settings.protocol_dirs, *dirs]))
        protocols.update({p.ref: p for p in map(load_protocol, files)})
    except ProtocolFileError as exc:
        raise CliError(f"{command}: invalid protocol: {errors.one_line(exc)}", 1) from None
    if args.action == "check":
        for ref, protocol in protocols.items():
            print(f"ok {ref}: {len(protocol.stages)} stages")
        return 0
    if args.protocol not in protocols:
        raise CliError(
            f"{command}: unknown protocol {args.protocol}; known: {', '.join(sorted(protocols))}"
        )
    errors.read_text(args.events, command, "history file")  # missing or unreadable: exit 4
    try:
        enrolment, events = read_history(args.events)
    except HistoryError as exc:
        raise CliError(
            f"{command}: invalid history: {errors.one_line(exc)}", errors.BAD_FILE
        ) from None
    print(render(simulate(protocols[args.protocol], enrolment, events), args.json))
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from .client_history import replay_stored

    url = errors.redis_url(settings.redis_url, "rehabgate replay")
    return replay_stored(url, settings, args.client, args.protocol)


COMMANDS = {
    "up": _up,
    "demo": _demo,
    "publish": _publish,
    "gatekeeper": _service,
    "notifier": _service,
    "health": _health,
    "dlq": dead_letters.command,
    "trim": trim.command,
    "schemas": _schemas,
    "protocol": _protocol,
    "replay": _replay,
    "audit": audit_commands.audit_command,
    "acl": security_commands.acl_command,
    "erase": security_commands.erase_command,
    "history": audit_commands.history_command,
    "export": fhir_command.command,
    "ingest": ingest_commands.ingest_command,
    "ingest-key": ingest_commands.key_command,
    "physio": physio_commands.command,
}

if __name__ == "__main__":
    sys.exit(main())
