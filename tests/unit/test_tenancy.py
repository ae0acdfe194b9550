"""Which clinic an entry speaks for (gatekeeper/tenancy.py + parse_entry), pure: the
stream decides, the payload's clinic must agree, signatures hold or the entry goes."""

from __future__ import annotations

import json

import pytest

from rehabgate.schemas.inbound import CheckinLogged
from rehabgate.schemas.signing import decode_key, generate_key, sign
from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.process import Entry, parse_entry
from rehabgate.services.gatekeeper.store import DeadLetter
from rehabgate.services.gatekeeper.tenancy import Source, claimed_ids, sources
from tests.events import checkin

NOW = 1_800_000_000
KEY = generate_key()
CLINIC_A = Source("rehabgate:inbound:clinic-a", "clinic-a")
SIGNED_A = Source("rehabgate:inbound:clinic-a", "clinic-a", True, (decode_key(KEY),), 300)


def entry(event: dict[str, object], **extra: str) -> Entry:
    fields = {"event": json.dumps(event), **extra}
    return Entry("1-0", {k.encode(): v.encode() for k, v in fields.items()})


def refused(parsed: object) -> DeadLetter:
    assert isinstance(parsed, DeadLetter)
    assert parsed.security is not None
    return parsed


def test_an_event_of_the_streams_clinic_is_accepted() -> None:
    assert isinstance(parse_entry(entry(checkin("c-1", 1)), CLINIC_A, NOW), CheckinLogged)


def test_an_event_naming_another_clinic_is_a_security_refusal() -> None:
    event = {**checkin("c-1", 1), "clinic_id": "clinic-b"}
    letter = refused(parse_entry(entry(event), CLINIC_A, NOW))
    assert letter.reason.startswith("clinic mismatch")
    assert letter.security == {
        "kind": "clinic_mismatch", "reason": letter.reason, "stream": CLINIC_A.stream,
        "entry_id": "1-0", "clinic_id": "clinic-a", "event_id": event["event_id"],
        "client_id": "c-1", "claimed_clinic_id": "clinic-b", "event_type": "checkin.logged",
    }  # fmt: skip


def test_the_shared_stream_is_closed_once_clinics_are_configured() -> None:
    letter = refused(
        parse_entry(entry(checkin("c-1", 1)), Source("rehabgate:inbound", closed=True))
    )
    assert letter.security is not None
    assert letter.security["kind"] == "closed_stream"


def test_a_clinic_requiring_signatures_refuses_unsigned_and_accepts_signed() -> None:
    event = checkin("c-1", 1)
    letter = refused(parse_entry(entry(event), SIGNED_A, NOW))
    assert letter.reason.startswith("signature missing")
    signed = sign(json.dumps(event), KEY, NOW)
    accepted = parse_entry(Entry("2-0", {k.encode(): v.encode() for k, v in signed.items()}),
                           SIGNED_A, NOW)  # fmt: skip
    assert isinstance(accepted, CheckinLogged)


def test_a_bad_signature_is_refused_even_where_signatures_are_optional() -> None:
    signed = sign(json.dumps(checkin("c-1", 1)), generate_key(), NOW)
    fields = {k.encode(): v.encode() for k, v in signed.items()}
    optional = Source(CLINIC_A.stream, "clinic-a", False, (decode_key(KEY),), 300)
    letter = refused(parse_entry(Entry("3-0", fields), optional, NOW))
    assert letter.security is not None
    assert letter.security["kind"] == "signature"


def test_security_events_copy_only_id_shaped_claims() -> None:
    body = json.dumps({"event_id": "x y", "client_id": "canary.person@example.org",
                       "clinic_id": "clinic-b", "note": "Canary Person"}).encode()  # fmt: skip
    assert claimed_ids(body) == {"claimed_clinic_id": "clinic-b"}
    assert claimed_ids(b"not json") == {}


def test_sources_follow_the_clinic_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [s.stream for s in sources(Settings())] == ["rehabgate:inbound"]
    monkeypatch.setenv(
        "REHABGATE_CLINICS",
        json.dumps({"clinic-b": {}, "clinic-a": {"require_signature": True, "keys": [KEY]}}),
    )
    found = sources(Settings())
    assert [(s.stream, s.clinic_id, s.require_signature, s.closed) for s in found] == [
        ("rehabgate:inbound:clinic-a", "clinic-a", True, False),
        ("rehabgate:inbound:clinic-b", "clinic-b", False, False),
        ("rehabgate:inbound", None, False, True),
    ]


@pytest.mark.parametrize(
    "clinics",
    [
        {"dead-letter": {}},
        {"clinic a": {}},
        {"clinic-a": {"require_signature": True}},
        {"clinic-a": {"keys": ["not base64!"]}},
    ],
)
def test_unusable_clinic_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, clinics: dict[str, object]
) -> None:
    monkeypatch.setenv("REHABGATE_CLINICS", json.dumps(clinics))
    with pytest.raises(ValueError, match="clinic"):
        Settings()


def test_signature_fields_are_ignored_where_there_is_no_key_to_check() -> None:
    signed = sign(json.dumps(checkin("c-1", 1)), generate_key(), NOW)
    fields = {k.encode(): v.encode() for k, v in signed.items()}
    assert isinstance(parse_entry(Entry("4-0", fields), Source("rehabgate:inbound"), NOW),
                      CheckinLogged)  # fmt: skip
