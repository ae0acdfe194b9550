"""Signed inbound events (schemas/signing.py + gatekeeper/signatures.py), pure:
every tampering, timing and key case of the research matrix (S17)."""

from __future__ import annotations

import base64
import inspect
import json
import re
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rehabgate.schemas.signing import SigningError, decode_key, generate_key, sign, signer
from rehabgate.services.gatekeeper import signatures
from rehabgate.services.gatekeeper.signatures import verify

NOW = 1_800_000_000
TOLERANCE = 300
OLD_KEY, NEW_KEY = generate_key(), generate_key()


def event_json(**changes: object) -> str:
    event = {
        "event_id": str(uuid.uuid4()), "event_type": "checkin.logged",
        "occurred_at": "2026-11-02T08:00:00+00:00", "clinic_id": "clinic-a",
        "client_id": "c-1", "morning_pain": 2, "morning_stiffness": 1, "swelling": False,
    }  # fmt: skip
    return json.dumps({**event, **changes})


def entry(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def check(fields: dict[str, str], keys: list[str], now: float = NOW) -> str | None:
    raw = entry(fields)
    return verify(raw, raw[b"event"], [decode_key(k) for k in keys], now, TOLERANCE)


def test_a_correctly_signed_event_is_accepted() -> None:
    assert check(sign(event_json(), OLD_KEY, NOW), [OLD_KEY]) is None


def test_a_tampered_body_is_refused() -> None:
    fields = sign(event_json(morning_pain=2), OLD_KEY, NOW)
    fields["event"] = fields["event"].replace('"morning_pain": 2', '"morning_pain": 9')
    assert check(fields, [OLD_KEY]) == (
        "signature invalid: no signature matches a key of this clinic"
    )


def test_a_tampered_timestamp_is_refused() -> None:
    fields = sign(event_json(), OLD_KEY, NOW)
    fields["timestamp"] = str(NOW + 1)
    assert check(fields, [OLD_KEY]) is not None


def test_a_tampered_event_id_is_refused() -> None:
    """A replay under a fresh id (to dodge the processed marker) breaks the signature."""
    original = event_json()
    fields = sign(original, OLD_KEY, NOW)
    old_id = json.loads(original)["event_id"]
    fields["event"] = original.replace(old_id, str(uuid.uuid4()))
    assert check(fields, [OLD_KEY]) is not None


def test_a_signature_made_for_another_event_id_is_refused() -> None:
    body = event_json()
    other = sign(event_json(), OLD_KEY, NOW)["signature"]
    fields = {"event": body, "signature": other, "timestamp": str(NOW)}
    assert check(fields, [OLD_KEY]) is not None


@pytest.mark.parametrize(
    ("age", "word"), [(TOLERANCE + 1, "expired"), (-(TOLERANCE + 1), "in the future")]
)
def test_a_timestamp_outside_the_tolerance_is_refused(age: int, word: str) -> None:
    fields = sign(event_json(), OLD_KEY, NOW - age)
    problem = check(fields, [OLD_KEY])
    assert problem is not None
    assert "outside the tolerance" in problem
    assert word in problem


@pytest.mark.parametrize("age", [TOLERANCE, -TOLERANCE, 0])
def test_a_timestamp_at_the_edge_of_the_tolerance_is_accepted(age: int) -> None:
    assert check(sign(event_json(), OLD_KEY, NOW - age), [OLD_KEY]) is None


def test_a_wrong_key_is_refused() -> None:
    assert check(sign(event_json(), generate_key(), NOW), [OLD_KEY]) is not None


def test_rotation_accepts_old_and_new_signatures_while_both_keys_are_valid() -> None:
    body = event_json()
    both_keys = [OLD_KEY, NEW_KEY]
    assert check(sign(body, OLD_KEY, NOW), both_keys) is None  # publisher not yet rotated
    assert check(sign(body, NEW_KEY, NOW), both_keys) is None  # publisher rotated
    dual = sign(body, [OLD_KEY, NEW_KEY], NOW)  # publisher signs with both
    assert len(dual["signature"].split()) == 2
    assert check(dual, [NEW_KEY]) is None  # old key retired: the new signature holds
    assert check(sign(body, OLD_KEY, NOW), [NEW_KEY]) is not None  # retired key refused


@pytest.mark.parametrize(
    ("fields", "start"),
    [
        ({"event": "{}"}, "signature missing"),
        ({"event": "{}", "signature": "v1,AAAA"}, "signature missing"),
        ({"event": "{}", "signature": "v1,AAAA", "timestamp": "soon"}, "signature timestamp"),
        ({"event": "{}", "signature": "v1,AAAA", "timestamp": str(NOW)}, "signature invalid"),
        ({"event": event_json(), "signature": "v2,AAAA", "timestamp": str(NOW)}, "signature invalid: no v1"),
        ({"event": event_json(), "signature": "v1," + "A" * 2000, "timestamp": str(NOW)}, "signature invalid: too long"),
    ],
)  # fmt: skip
def test_malformed_signature_fields_are_refused(fields: dict[str, str], start: str) -> None:
    problem = check(fields, [OLD_KEY])
    assert problem is not None
    assert problem.startswith(start)


def test_no_key_configured_means_nothing_verifies() -> None:
    raw = entry(sign(event_json(), OLD_KEY, NOW))
    assert verify(raw, raw[b"event"], [], NOW, TOLERANCE) is not None


def test_comparison_is_constant_time() -> None:
    source = inspect.getsource(signatures)
    assert "hmac.compare_digest" in source
    assert not re.search(r"candidate\s*(==|in)\s*(expected|wanted)", source)


def test_the_sdk_signer_adds_signature_and_timestamp() -> None:
    body = event_json().encode()
    extra = signer(OLD_KEY, clock=lambda: NOW)("rehabgate:inbound:clinic-a", body)
    assert set(extra) == {"signature", "timestamp"}
    assert check({"event": body.decode(), **extra}, [OLD_KEY]) is None


def test_keys_must_be_base64_of_enough_bytes() -> None:
    assert decode_key("whsec_" + OLD_KEY) == decode_key(OLD_KEY)
    with pytest.raises(SigningError):
        decode_key("not base64!")
    with pytest.raises(SigningError):
        decode_key(base64.b64encode(b"short").decode())
    with pytest.raises(SigningError):
        sign("{}", OLD_KEY, NOW)  # no event_id to sign


@settings(max_examples=300, deadline=None)
@given(
    pain=st.integers(0, 10),
    where=st.sampled_from(["event", "timestamp", "signature"]),
    position=st.integers(0, 10_000),
    flip=st.integers(1, 255),
)
def test_any_single_byte_change_is_refused(
    pain: int, where: str, position: int, flip: int
) -> None:
    fields = sign(event_json(morning_pain=pain), OLD_KEY, NOW)
    data = bytearray(fields[where].encode())
    index = position % len(data)
    data[index] ^= flip
    changed = dict(fields)
    try:
        changed[where] = data.decode()
    except UnicodeDecodeError:
        changed[where] = data.decode(errors="replace")
    if changed[where] == fields[where]:
        return
    assert check(changed, [OLD_KEY]) is not None
