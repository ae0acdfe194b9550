"""The log allowlist keeps known-safe keys with id-shaped values and drops the rest."""

from __future__ import annotations

import uuid
from typing import Any

from rehabgate.services.common.log_allowlist import allowlist, safe_message, safe_reason


def run(**event: Any) -> dict[str, Any]:
    return dict(allowlist(None, "info", {"event": "event_applied", **event}))


def test_ids_counts_and_outcomes_are_kept() -> None:
    event_id = uuid.uuid4()
    line = run(
        event_id=event_id, client_id="c-7f3a9", clinic_id="clinic-a", entry_id="1-0",
        stream="rehabgate:{p0}:evaluated", outcome="held", reclaimed=False, delivered=3,
        protocols=["achilles-tendinopathy@1"], level="info", timestamp="2026-11-02T08:00:00Z",
    )  # fmt: skip
    assert line == {
        "event": "event_applied", "event_id": str(event_id), "client_id": "c-7f3a9",
        "clinic_id": "clinic-a", "entry_id": "1-0", "stream": "rehabgate:{p0}:evaluated",
        "outcome": "held", "reclaimed": False, "delivered": 3,
        "protocols": ["achilles-tendinopathy@1"], "level": "info",
        "timestamp": "2026-11-02T08:00:00Z",
    }  # fmt: skip


def test_unknown_keys_are_dropped_and_named() -> None:
    line = run(morning_pain=7, address="canary.person@example.org", client_id="c-1")
    assert line == {"event": "event_applied", "client_id": "c-1",
                    "dropped": ["address", "morning_pain"]}  # fmt: skip


def test_id_keys_keep_only_id_shaped_values() -> None:
    line = run(
        correlation_id="canary.person@example.org", client_id="Canary Person",
        clinic_id={"nested": "x"}, event_type="checkin.logged",
    )  # fmt: skip
    assert line == {
        "event": "event_applied", "event_type": "checkin.logged",
        "dropped": ["client_id", "clinic_id", "correlation_id"],
    }  # fmt: skip


def test_numbers_only_under_count_keys() -> None:
    assert run(delivered="Canary Person") == {"event": "event_applied", "dropped": ["delivered"]}


def test_reasons_keep_their_leading_words_only() -> None:
    assert safe_reason("schema violation: morning_pain: 97 is more than 10") == (
        "schema violation"
    )
    assert safe_reason("client belongs to another clinic") == "client belongs to another clinic"
    assert safe_reason("unknown protocol canary@1") == "unknown protocol"
    assert safe_reason("550 5.1.1 <canary.person@example.org> rejected") is None
    assert safe_reason("Canary Person") is None
    assert run(error="ConnectionError")["error"] == "ConnectionError"
    assert run(error="[Errno 111] canary.person@example.org")["error"] is None


def test_messages_that_may_quote_values_are_reduced() -> None:
    assert safe_message("event_applied") == "event_applied"
    assert safe_message("FastStream app starting...") == "FastStream app starting..."
    assert safe_message("ValueError: Canary Person has pain 97") == "ValueError"
    assert safe_message("input_value='canary.person@example.org'") == "log_message_redacted"
    assert safe_message(97) == "log_message_redacted"


def test_exceptions_keep_type_and_frames_but_no_message() -> None:
    try:
        raise ValueError("Canary Person, morning pain 97")
    except ValueError as exc:
        line = run(exc_info=exc)
    (stack,) = line["exception"]
    assert stack["exc_type"] == "ValueError"
    assert stack["frames"]
    assert "Canary" not in repr(line)
    assert "97" not in repr(line)


def _traceback_text(exc: BaseException) -> str:
    import traceback

    try:
        raise exc
    except BaseException:
        return traceback.format_exc()


def test_a_start_up_failure_names_its_cause_and_nothing_else() -> None:
    import redis

    text = _traceback_text(redis.ConnectionError("Error 111 connecting to 127.0.0.1:1."))
    line = allowlist(None, "error", {"event": text, "logger": "uvicorn.error", "level": "error"})
    assert line == {
        "event": "Redis unreachable",
        "error": "ConnectionError",
        "logger": "uvicorn.error",
        "level": "error",
    }
    refused = _traceback_text(redis.AuthenticationError("invalid username-password pair"))
    assert allowlist(None, "error", {"event": refused})["event"] == "Redis refused the credentials"


def test_a_traceback_quoting_health_data_keeps_only_its_class_name() -> None:
    text = _traceback_text(ValueError("Canary Person canary.person@example.org pain 97"))
    line = allowlist(None, "error", {"event": text})
    assert line == {"event": "Service failed", "error": "ValueError"}
    assert "Canary" not in str(line)
    assert "97" not in str(line)
