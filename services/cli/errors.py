"""How every `rehabgate` command fails: one line on stderr and a documented exit code.

Commands raise `CliError` for what they detect themselves (a missing `REDIS_URL`,
an unknown client, a malformed file); `guarded` turns everything else a command
can meet (Redis unreachable or refusing, a file that cannot be read or written,
Ctrl-C) into the same one line, so no Python traceback ever reaches the user.
The codes are listed in `rehabgate --help` and in the README's CLI section.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from .stack import URL_FILE

#: Exit codes (EXIT_CODES is the text `rehabgate --help` shows).
OK = 0
FOUND_PROBLEM = 1
USAGE = 2
SERVICE_START = 3
BAD_FILE = 4
REDIS = 5
ALREADY_RUNNING = 6
INTERNAL = 70
INTERRUPTED = 130

EXIT_CODES = """\
exit codes:
  0    done
  1    done, and found a problem: a broken audit chain, an event dead-lettered or
       not settled in time, stale schema files, an invalid protocol file, a
       dead-letter id not found, a service or Redis that stopped under `up`
  2    bad usage: a bad argument, invalid configuration (REHABGATE_*), no Redis
       configured, or an unknown client or protocol
  3    a service (gatekeeper, notifier) failed to start
  4    a file is missing, unreadable, not writable or malformed
  5    Redis unreachable, or it refused us (credentials, ACL permission)
  6    `rehabgate up` is already running in this directory
  70   internal error (a bug: please report the line)
  130  interrupted (Ctrl-C)
"""


class CliError(Exception):
    """A failure the command has put into words: printed as one line, exit `code`."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(message)
        self.code = code


def redis_url(settings_url: str | None, command: str) -> str:
    """REDIS_URL, else the URL of the `rehabgate up` running in this directory."""
    if settings_url:
        return settings_url
    if URL_FILE.is_file():
        return URL_FILE.read_text().strip()
    raise CliError(
        f"{command}: no Redis: set REDIS_URL, or start `rehabgate up` in this directory first"
    )


def shown_url(url: str | None) -> str:
    """A Redis URL fit to print: its password replaced by `***`."""
    if not url:
        return "(no URL)"
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    except ValueError:
        return "(unparsable URL)"


def one_line(text: object) -> str:
    """`text` as one line (exceptions' messages may span several)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(lines) or type(text).__name__


def explain(exc: BaseException, command: str, url: str | None) -> tuple[str, int]:
    """The line and exit code for an exception a command did not handle itself."""
    where = shown_url(url)
    if isinstance(exc, CliError):
        return one_line(exc), exc.code
    if isinstance(exc, redis.AuthenticationError):
        return f"{command}: Redis at {where} refused the credentials ({one_line(exc)})", REDIS
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return f"{command}: the Redis user may not do this: {one_line(exc)}", REDIS
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | ConnectionError):
        return f"{command}: Redis unreachable at {where} ({one_line(exc)})", REDIS
    if isinstance(exc, redis.exceptions.RedisClusterException):
        return f"{command}: Redis Cluster at {where} unusable ({one_line(exc)})", REDIS
    if isinstance(exc, redis.RedisError):
        return f"{command}: Redis refused a command: {one_line(exc)}", FOUND_PROBLEM
    from rehabgate.services.gatekeeper.protocol_files import ProtocolFileError

    if isinstance(exc, ProtocolFileError):
        return f"{command}: invalid protocol: {one_line(exc)}", BAD_FILE
    if isinstance(exc, UnicodeDecodeError):
        return f"{command}: a file is not UTF-8 text ({one_line(exc)})", BAD_FILE
    if isinstance(exc, OSError) and exc.filename is not None:
        reason = exc.strerror or one_line(exc)
        return f"{command}: {exc.filename}: {reason}", BAD_FILE
    if isinstance(exc, KeyboardInterrupt):
        return f"{command}: interrupted", INTERRUPTED
    return (
        f"{command}: internal error: {type(exc).__name__}: {one_line(exc)} (please report)",
        INTERNAL,
    )


def guarded(command: str, url: Callable[[], str | None], run: Callable[[], int]) -> int:
    """`run()`, with any failure printed as one line on stderr; returns the exit code.
    `url`: the Redis URL the command used, for the message (password hidden)."""
    try:
        return run()
    except BrokenPipeError:  # `rehabgate history X | head`: the reader has had enough
        _silence_stdout()
        return OK
    except (Exception, KeyboardInterrupt) as exc:
        line, code = explain(exc, command, _safe(url))
        print(line, file=sys.stderr, flush=True)
        return code


def _safe(url: Callable[[], str | None]) -> str | None:
    try:
        return url()
    except Exception:
        return None


def _silence_stdout() -> None:
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def read_text(path: Path, command: str, what: str = "file") -> str:
    """A text file's contents, or a CliError naming the file and why (exit 4)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{command}: {what} {path} not found", BAD_FILE) from None
    except IsADirectoryError:
        raise CliError(f"{command}: {path} is a directory, not a {what}", BAD_FILE) from None
    except UnicodeDecodeError:
        raise CliError(f"{command}: {what} {path} is not UTF-8 text", BAD_FILE) from None
    except OSError as exc:
        raise CliError(f"{command}: cannot read {path}: {exc.strerror}", BAD_FILE) from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 86400 seconds")
    return value
