"""The log allowlist: every log line keeps only keys known to be safe, with values
of the expected shape; everything else is dropped before rendering.

Why an allowlist and not a redaction list: a list of forbidden names misses the
next field someone logs (OWASP Logging: exclude health data and personal data).
Here a new key is dropped until someone adds it below, and its name shows in
`dropped`, so the omission is visible without the value ever being written.

Values are checked too, because an allowed key can still carry text from a
payload: ids must look like ids (no spaces, no `@`: no names, no e-mail
addresses), reasons keep only their first few lowercase words before any `:`
(what was wrong, never the offending value), errors only an exception class name,
and exceptions only their type and frames (file, line, function) — never their
message, which can quote a payload (pydantic's does), and never locals.

A message that is a whole formatted traceback (how uvicorn reports a failed
start-up: FastStream hands it the traceback text) becomes a fixed sentence naming
the cause ("Redis unreachable", "Redis refused the credentials", ...) with the
exception's class name as `error`; its text, which may quote anything, is dropped.
"""

from __future__ import annotations

import re
import sys
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any
from uuid import UUID

import structlog

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:{}|+-]{0,159}$")
_PROTOCOL_REF = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}@[1-9][0-9]{0,5}$")
_ROUTE = re.compile(r"^/[A-Za-z0-9/_.-]{0,100}$")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,80}$")
_SNAKE = re.compile(r"^[a-z][a-z0-9_]{0,80}$")
_WORD = re.compile(r"^[a-z]+(-[a-z]+)*$")
# A fixed library message ("FastStream app starting..."); no ':', '=', quotes or '@',
# so no "Error: <value>" or "input_value=..." can pass.
_MESSAGE = re.compile(r"^[A-Za-z][A-Za-z0-9 _.,!+()\[\]-]{0,200}$")
_REASON_WORDS = 6
_FRAMES = 12

#: Written by the logging set-up itself.
PLAIN_KEYS = frozenset({"level", "timestamp", "logger"})
#: Ids and names: strings shaped like an id.
ID_KEYS = frozenset(
    {
        "event_id", "correlation_id", "client_id", "clinic_id", "entry_id", "decision_id",
        "message_id", "source_id", "erasure_id", "consumer", "stream", "group", "event_type",
        "outcome", "fate", "kind", "channel", "service", "component", "host", "below", "user",
        "partition", "protocol",
    }
)  # fmt: skip
#: Lists of ids.
ID_LIST_KEYS = frozenset({"protocols", "channels", "consumers", "streams", "clinics"})
#: Counts, flags, ports and statuses: numbers and booleans only.
NUMBER_KEYS = frozenset(
    {
        "port", "status", "removed", "deliveries", "tries", "resend", "reclaimed", "count",
        "entries", "clients", "events", "applied", "duplicate", "dead_lettered", "scheduled",
        "no_message", "delivered", "failed", "deferred", "left_for_loop", "completed",
        "finished", "changed", "not_due", "busy", "claimed", "gone", "security_events",
        "erased", "version", "seconds",
    }
)  # fmt: skip
#: Free text reduced to its safe part.
TEXT_KEYS = frozenset({"reason", "error"})


#: Fixed sentences for the causes of a failure logged as a traceback text, by the
#: exception's class name (the last one in the traceback: what was raised).
TRACEBACK_CAUSES = {
    "AuthenticationError": "Redis refused the credentials",
    "AuthenticationWrongNumberOfArgsError": "Redis refused the credentials",
    "NoPermissionError": "Redis user lacks a permission",
    "ConnectionError": "Redis unreachable",
    "TimeoutError": "Redis unreachable",
    "ConnectionRefusedError": "Redis unreachable",
    "ClusterDownError": "Redis unreachable",
    "MaxConnectionsError": "Redis unreachable",
    "BusyLoadingError": "Redis is loading its data",
    "ReadOnlyError": "Redis is a read-only replica",
}
_TRACEBACK_HEAD = "Traceback (most recent call last):"


def traceback_cause(text: str) -> tuple[str, str] | None:
    """(fixed sentence, exception class name) for a formatted traceback; None for
    any other text."""
    if _TRACEBACK_HEAD not in text:
        return None
    lines = [line for line in text.strip().splitlines() if line and not line[0].isspace()]
    last = lines[-1].split(":", 1)[0].strip() if lines else ""
    name = last.rsplit(".", 1)[-1]
    if not _CLASS_NAME.match(name):
        return "Service failed", "unknown"
    return TRACEBACK_CAUSES.get(name, "Service failed"), name


def allowlist(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The structlog processor (also applied to foreign, stdlib log records)."""
    message = event_dict.get("event")
    cause = traceback_cause(message) if isinstance(message, str) else None
    if cause is not None:
        event_dict = {**event_dict, "event": cause[0], "error": cause[1]}
    kept: dict[str, Any] = {"event": safe_message(event_dict.get("event"))}
    dropped = []
    for key, value in event_dict.items():
        if key == "event":
            continue
        safe = _safe_value(key, value)
        if key == "exc_info" and safe is None:
            continue  # no exception after all (FastStream passes exc_info=None)
        if safe is not _DROP:
            kept["exception" if key == "exc_info" else key] = safe
        elif key not in _SILENT and not key.startswith("_") and _SNAKE.match(key):
            dropped.append(key)
    if dropped:
        kept["dropped"] = sorted(dropped)
    return kept


_DROP = object()
#: Dropped without a mention: FastStream passes `extra` with every line.
_SILENT = frozenset({"extra"})


def _safe_value(key: str, value: Any) -> Any:
    if key in ("exc_info", "exception"):
        return safe_exception(value) if key == "exc_info" else _DROP
    if value is None and (key in ID_KEYS or key in NUMBER_KEYS or key in TEXT_KEYS):
        return None
    if key in PLAIN_KEYS:
        return value if isinstance(value, str) else _DROP
    if key in ID_KEYS:
        return safe_id(value, protocol=key == "protocol")
    if key == "route":
        return value if isinstance(value, str) and _ROUTE.match(value) else _DROP
    if key in ID_LIST_KEYS:
        if not isinstance(value, list | tuple | set | frozenset):
            return _DROP
        return [item for item in (safe_id(v, protocol=True) for v in value) if item is not _DROP]
    if key in NUMBER_KEYS:
        return value if isinstance(value, int | float) else _DROP
    if key == "reason":
        return safe_reason(value) if isinstance(value, str) else _DROP
    if key == "error":
        return safe_error(value) if isinstance(value, str) else _DROP
    return _DROP


def safe_id(value: Any, protocol: bool = False) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return _DROP
    if _SAFE_ID.match(value) or (protocol and _PROTOCOL_REF.match(value)):
        return value
    return _DROP


def safe_reason(text: str) -> str | None:
    """The leading lowercase words before any ':' — "schema violation", "client
    belongs to another clinic" — and nothing after the first word that is not one."""
    words: list[str] = []
    for word in text.split(":", 1)[0].split():
        if not _WORD.match(word) or len(words) == _REASON_WORDS:
            break
        words.append(word)
    return " ".join(words) or None


def safe_error(text: str) -> str | None:
    """An exception class name as it is ("ConnectionError"), else a reason's words."""
    return text if _CLASS_NAME.match(text) else safe_reason(text)


def safe_message(value: Any) -> str:
    """Our own events are snake_case names; a library's fixed sentence passes too. A
    message that may quote a value keeps only its leading class name ("ValueError")."""
    if not isinstance(value, str):
        return "log_message_redacted"
    if _SNAKE.match(value) or _MESSAGE.match(value):
        return value
    head = value.split(":", 1)[0]
    return head if ":" in value and _CLASS_NAME.match(head) else "log_message_redacted"


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def safe_exception(value: Any) -> list[dict[str, Any]] | None:
    """The exception's type and where it happened (per chained exception); no message."""
    info: ExcInfo | None = None
    if value is True:
        current = sys.exc_info()
        info = current if current[1] is not None else None
    elif isinstance(value, BaseException):
        info = (type(value), value, value.__traceback__)
    elif isinstance(value, tuple) and len(value) == 3 and value[1] is not None:
        info = value
    if info is None:
        return None
    trace = structlog.tracebacks.extract(*info, show_locals=False)
    return [
        {
            "exc_type": stack.exc_type,
            "frames": [f"{f.filename}:{f.lineno}:{f.name}" for f in stack.frames[-_FRAMES:]],
        }
        for stack in trace.stacks
    ]
