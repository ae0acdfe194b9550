"""Every `rehabgate` command fails in one line: an unreachable Redis, a missing or
malformed file, a bad argument or an unknown client is exactly one line on stderr,
no traceback anywhere, and the exit code `rehabgate --help` documents."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from rehabgate.services.cli import errors
from rehabgate.services.cli.main import build_parser

REHABGATE = str(Path(sys.executable).with_name("rehabgate"))
UNREACHABLE = "redis://127.0.0.1:1/0"
MISSING = "/nonexistent-rehabgate-dir/missing.json"


def run(
    *args: str, redis_url: str | None = UNREACHABLE, cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [REHABGATE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    shown = f"rc={done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stdout + done.stderr, shown
    lines = done.stderr.splitlines()
    assert len(lines) == 1, shown
    assert done.returncode == code, shown
    return lines[0]


# (arguments, exit code, words the line must hold)
UNREACHABLE_REDIS = [
    (["publish", "{events}"], errors.REDIS, "Redis unreachable at redis://127.0.0.1:1"),
    (["health", "gatekeeper"], errors.REDIS, "Redis unreachable"),
    (["dlq", "list"], errors.REDIS, "Redis unreachable"),
    (["dlq", "replay", "--all"], errors.REDIS, "Redis unreachable"),
    (["dlq", "replay", "1-0"], errors.REDIS, "Redis unreachable"),
    (["trim"], errors.REDIS, "Redis unreachable"),
    (["replay", "c-1", "--protocol", "achilles-tendinopathy@1"], errors.REDIS, "unreachable"),
    (["audit", "verify", "c-1"], errors.REDIS, "Redis unreachable"),
    (["audit", "verify", "--all"], errors.REDIS, "Redis unreachable"),
    (["history", "c-1"], errors.REDIS, "Redis unreachable"),
    (["export", "fhir", "c-1"], errors.REDIS, "Redis unreachable"),
    (["erase", "c-1"], errors.REDIS, "Redis unreachable"),
    (["erase", "--verify"], errors.REDIS, "Redis unreachable"),
    (["gatekeeper"], errors.REDIS, "rehabgate gatekeeper: Redis unreachable"),
    (["notifier"], errors.REDIS, "rehabgate notifier: Redis unreachable"),
    (["up"], errors.REDIS, "rehabgate up: Redis unreachable"),
    (["demo"], errors.REDIS, "Redis unreachable"),
]

BAD_FILES = [
    (["publish", MISSING], errors.BAD_FILE, "not found"),
    (["publish", "{not_json}"], errors.BAD_FILE, "not JSON"),
    (["publish", "{invalid}"], errors.BAD_FILE, "nothing sent; item 2: pain_during"),
    (["publish", "{empty}"], errors.BAD_FILE, "holds no events"),
    (["publish", "{directory}"], errors.BAD_FILE, "is a directory"),
    (["protocol", "simulate", "achilles-tendinopathy@1", "--events", MISSING],
     errors.BAD_FILE, "not found"),
    (["protocol", "simulate", "achilles-tendinopathy@1", "--events", "{not_json}"],
     errors.BAD_FILE, "invalid history"),
    (["protocol", "check", MISSING], errors.BAD_FILE, "not found"),
    (["protocol", "check", "{broken_protocol}"], errors.FOUND_PROBLEM, "Field required"),
    (["acl", "generate", "--out", "/proc/rehabgate/x.acl"], errors.BAD_FILE,
     "cannot create /proc/rehabgate"),
    (["acl", "generate", "--out", "{directory}"], errors.BAD_FILE, "is a directory"),
]  # fmt: skip

BAD_ARGUMENTS = [
    ([], errors.USAGE, "required: COMMAND"),
    (["no-such-command"], errors.USAGE, "invalid choice"),
    (["dlq", "list", "--limit", "-3"], errors.USAGE, "--limit: -3 must be at least 1"),
    (["dlq", "list", "--limit", "many"], errors.USAGE, "not a whole number"),
    (["dlq", "list", "--stream", "nowhere"], errors.USAGE, "invalid choice"),
    (["dlq", "replay"], errors.USAGE, "ENTRY_IDs or --all"),
    (["dlq", "replay", "1-0", "--all"], errors.USAGE, "ENTRY_IDs or --all"),
    (["publish"], errors.USAGE, "required: file"),
    (["publish", "{events}", "--wait", "-1"], errors.USAGE, "--wait"),
    (["health", "nobody"], errors.USAGE, "invalid choice"),
    (["audit", "verify"], errors.USAGE, "required"),
    (["audit", "verify", "c-1", "--all"], errors.USAGE, "not allowed with"),
    (["history", "c-1", "--json", "--csv"], errors.USAGE, "not allowed with"),
    (["export"], errors.USAGE, "required"),
    (["erase"], errors.USAGE, "required"),
    (["erase", "c-1", "--ticket", "Jane Doe"], errors.USAGE, "--ticket must be an id"),
    (["acl", "generate", "--redis-version", "seven"], errors.USAGE, "--redis-version"),
    (["protocol", "simulate", "nothing@9", "--events", "{events}"], errors.USAGE,
     "unknown protocol nothing@9"),
    (["replay", "c-1"], errors.USAGE, "required: --protocol"),
    (["schemas", "rewrite"], errors.USAGE, "invalid choice"),
    (["demo", "--channel", "email"], errors.USAGE, "--address"),
    (["up", "extra"], errors.USAGE, "unrecognized arguments"),
]  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    client = f"c-{uuid.uuid4().hex[:8]}"
    enrolment = {"event_id": str(uuid.uuid4()), "event_type": "client.enrolled",
                 "schema_version": 1, "occurred_at": "2026-11-02T08:00:00+00:00",
                 "clinic_id": "clinic-a", "client_id": client,
                 "protocol": "achilles-tendinopathy@1", "start_date": "2026-11-02"}  # fmt: skip
    invalid = {**enrolment, "event_id": str(uuid.uuid4()), "event_type": "session.logged",
               "session_id": "s1", "pain_during": 12, "completed": True}  # fmt: skip
    del invalid["protocol"], invalid["start_date"]
    made = {
        "events": json.dumps(enrolment),
        "invalid": json.dumps([enrolment, invalid]),
        "not_json": '{"event_id": \n',
        "empty": "",
    }
    paths = {}
    for name, text in made.items():
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        paths[name] = str(path)
    (tmp_path / "a-directory").mkdir()
    paths["directory"] = str(tmp_path / "a-directory")
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    (protocols / "broken@1.yaml").write_text("id: broken\nversion: 1\n")
    paths["broken_protocol"] = str(protocols)
    return paths


def _argv(args: list[str], files: dict[str, str]) -> list[str]:
    return [a.format(**files) for a in args]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "says"), UNREACHABLE_REDIS, ids=lambda v: str(v))
def test_an_unreachable_redis_is_one_line(
    args: list[str], code: int, says: str, files: dict[str, str], tmp_path: Path
) -> None:
    line = assert_one_line(run(*_argv(args, files), cwd=tmp_path), code)
    assert says in line
    assert not (tmp_path / ".rehabgate" / "redis.url").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "says"), BAD_FILES, ids=lambda v: str(v))
def test_a_missing_or_malformed_file_is_one_line(
    args: list[str], code: int, says: str, files: dict[str, str], tmp_path: Path
) -> None:
    line = assert_one_line(run(*_argv(args, files), cwd=tmp_path), code)
    assert says in line


@pytest.mark.slow
@pytest.mark.parametrize(("args", "code", "says"), BAD_ARGUMENTS, ids=lambda v: str(v))
def test_a_bad_argument_is_one_line(
    args: list[str], code: int, says: str, files: dict[str, str], tmp_path: Path
) -> None:
    line = assert_one_line(run(*_argv(args, files), cwd=tmp_path), code)
    assert says in line


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [["dlq", "list"], ["trim"], ["history", "c-1"], ["publish", "{events}"], ["audit", "verify",
     "--all"], ["export", "fhir", "c-1"], ["erase", "c-1"], ["replay", "c-1", "--protocol",
     "achilles-tendinopathy@1"], ["dlq", "replay", "--all"]],
    ids=lambda v: str(v),
)  # fmt: skip
def test_no_redis_configured_is_one_line(
    args: list[str], files: dict[str, str], tmp_path: Path
) -> None:
    line = assert_one_line(run(*_argv(args, files), redis_url=None, cwd=tmp_path), errors.USAGE)
    assert "set REDIS_URL, or start `rehabgate up`" in line


UNKNOWN_CLIENT = [
    ["audit", "verify", "{client}"],
    ["history", "{client}"],
    ["export", "fhir", "{client}"],
    ["replay", "{client}", "--protocol", "achilles-tendinopathy@1"],
    ["erase", "{client}"],
]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("args", UNKNOWN_CLIENT, ids=lambda v: str(v))
def test_an_unknown_client_is_one_line(args: list[str], redis_url: str, tmp_path: Path) -> None:
    client = f"nobody-{uuid.uuid4().hex[:8]}"
    done = run(*[a.format(client=client) for a in args], redis_url=redis_url, cwd=tmp_path)
    line = assert_one_line(done, errors.USAGE)
    assert client in line
    assert done.stdout == ""


@pytest.mark.integration
@pytest.mark.slow
def test_a_redis_url_with_a_password_is_never_printed(tmp_path: Path) -> None:
    done = run("dlq", "list", redis_url="redis://ops:s3cret@127.0.0.1:1/0", cwd=tmp_path)
    line = assert_one_line(done, errors.REDIS)
    assert "s3cret" not in line
    assert "redis://ops:***@127.0.0.1:1/0" in line


def test_version_and_help_document_the_exit_codes(tmp_path: Path) -> None:
    from importlib.metadata import version

    shown = run("--version", cwd=tmp_path)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"rehabgate {version('rehabgate')}")
    helped = run("--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert errors.EXIT_CODES.splitlines()[2].strip() in helped.stdout
    for code in (0, 1, 2, 3, 4, 5, 6, 70, 130):
        assert f"\n  {code} " in helped.stdout


def _parsers(parser: argparse.ArgumentParser, path: str = "rehabgate") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"`{path} {name}` has no help text"
                found += _parsers(sub, f"{path} {name}")
    return found


def test_every_subcommand_and_argument_has_help_with_defaults_shown() -> None:
    for path, parser in _parsers(build_parser()):
        assert isinstance(parser.formatter_class, type)
        assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), path
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            assert action.help, f"`{path}` argument {action.dest} has no help text"
    listing = dict(_parsers(build_parser()))["rehabgate dlq list"]
    assert "(default: 50)" in listing.format_help()
