"""The `rehabgate` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from rehabgate.services.common.settings import Settings, settings_or_exit

from . import audit_commands, dead_letters, fhir_command, security_commands, trim
from .stack import STATE_DIR, URL_FILE, Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rehabgate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run Redis (embedded unless REDIS_URL), gatekeeper, notifier")
    demo = commands.add_parser("demo", help="a scripted clinic end to end; exits 0 when done")
    demo.add_argument(
        "--channel", choices=["stream", "email", "webhook"], default="stream",
        help="deliver the demo clients' messages through this channel (configure SMTP or "
        "webhooks with REHABGATE_* variables; see README)",
    )  # fmt: skip
    demo.add_argument("--address", help="the demo clients' e-mail address or webhook recipient")
    publish = commands.add_parser("publish", help="publish clinic events from a JSON file")
    publish.add_argument("file", type=Path)
    publish.add_argument("--wait", type=float, default=10.0, help="seconds to wait for fates")
    commands.add_parser("gatekeeper", help="run the gatekeeper service (needs REDIS_URL)")
    commands.add_parser("notifier", help="run the notifier service (needs REDIS_URL)")
    health = commands.add_parser("health", help="exit 0 if SERVICE is consuming")
    health.add_argument("service", choices=["gatekeeper", "notifier"])
    dead_letters.configure(commands.add_parser("dlq", help="list or replay dead letters"))
    commands.add_parser("trim", help="trim consumed, expired entries from the work streams")
    schemas = commands.add_parser("schemas", help="JSON Schema files of the contract")
    schemas.add_argument("action", choices=["export", "check"])
    protocol = commands.add_parser("protocol", help="check protocol files, simulate histories")
    protocol_commands = protocol.add_subparsers(dest="action", required=True)
    check = protocol_commands.add_parser("check", help="validate protocol files")
    check.add_argument("paths", nargs="*", type=Path, help="protocol files or directories")
    simulate = protocol_commands.add_parser("simulate", help="replay a history through a protocol")
    simulate.add_argument("protocol", help="id@version")
    simulate.add_argument("--events", type=Path, required=True, help="JSON lines of one client")
    simulate.add_argument("--json", action="store_true", help="one JSON object per decision")
    replay = commands.add_parser("replay", help="a stored client's history under another version")
    replay.add_argument("client")
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
    args = parser.parse_args(argv)
    settings = settings_or_exit()  # invalid settings: one line per error, exit code 2
    return int(COMMANDS[args.command](args, settings) or 0)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = None if settings.redis_url else STATE_DIR / "redis"
    with Stack(settings.redis_url, data_dir=data_dir) as stack:
        assert stack.redis_url is not None
        URL_FILE.parent.mkdir(exist_ok=True)
        URL_FILE.write_text(stack.redis_url)
        print(f"rehabgate up: REDIS_URL={stack.redis_url} (Ctrl-C to stop)", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while not stack.dead():
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        print(f"rehabgate up: {stack.dead()} exited; stopping", file=sys.stderr)
        return 1


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    if args.channel == "email" and not args.address:
        print("demo: --channel email needs --address you@example.org", file=sys.stderr)
        return 2
    return run_demo(settings, channel=args.channel, address=args.address)


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from .publish import publish

    url = settings.redis_url or (URL_FILE.read_text().strip() if URL_FILE.is_file() else None)
    if url is None:
        print("publish: set REDIS_URL, or start `rehabgate up` in this directory first")
        return 2
    return publish(url, args.file, settings.partitions, args.wait)


def _service(args: argparse.Namespace, settings: Settings) -> int:
    # Both are ASGI apps: the gatekeeper serves the physio pages, both health and metrics.
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
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from .health import check

    if not settings.redis_url:
        print("health: set REDIS_URL")
        return 2
    ok, detail = check(settings.redis_url, args.service, os.environ.get("REHABGATE_CONSUMER"),
                      cluster=settings.redis_cluster)  # fmt: skip
    print(detail)
    return 0 if ok else 1


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

    files = [p for p in getattr(args, "paths", []) if p.is_file()]
    dirs = [p for p in getattr(args, "paths", []) if not p.is_file()]
    try:
        protocols = dict(load_protocols([*settings.protocol_dirs, *dirs]))
        protocols.update({p.ref: p for p in map(load_protocol, files)})
    except ProtocolFileError as exc:
        print(f"invalid protocol: {exc}")
        return 1
    if args.action == "check":
        for ref, protocol in protocols.items():
            print(f"ok {ref}: {len(protocol.stages)} stages")
        return 0
    if args.protocol not in protocols:
        print(f"unknown protocol {args.protocol}; known: {', '.join(sorted(protocols))}")
        return 2
    try:
        enrolment, events = read_history(args.events)
    except HistoryError as exc:
        print(f"invalid history: {exc}")
        return 1
    print(render(simulate(protocols[args.protocol], enrolment, events), args.json))
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from .client_history import replay_stored

    url = settings.redis_url or (URL_FILE.read_text().strip() if URL_FILE.is_file() else None)
    if url is None:
        print("replay: set REDIS_URL, or start `rehabgate up` in this directory first")
        return 2
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
}

if __name__ == "__main__":
    sys.exit(main())
