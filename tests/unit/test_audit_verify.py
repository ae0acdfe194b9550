"""The pure chain verifier on small hand-made chains: each kind of break, where it is
reported, and what is not a break. (1,000 random tamperings of each kind run against
a real history in tests/integration/test_audit_trail.py.)"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from pydantic import SecretStr

from rehabgate.services.gatekeeper.audit.verify import (
    Head,
    StoredEntry,
    entry_hash,
    verify_chain,
)
from rehabgate.services.gatekeeper.physio_web.access import ClinicAccess, presented_token
from rehabgate.services.gatekeeper.store import GENESIS, chain


def make_chain(length: int) -> tuple[list[StoredEntry], Head]:
    entries, head = [], GENESIS
    for seq in range(1, length + 1):
        body, head = chain(head, {"seq": str(seq), "note": json.dumps(f"entry {seq}")})
        entries.append(StoredEntry(f"{seq}-0", body, head))
    return entries, Head(head, length)


def test_an_intact_chain_and_an_empty_one_verify() -> None:
    assert verify_chain(*make_chain(5)).ok
    assert verify_chain([], Head(None, 0)).ok


def test_an_edited_entry_is_named() -> None:
    entries, head = make_chain(5)
    entries[2] = replace(entries[2], entry=entries[2].entry.replace("entry 3", "entry 9"))
    broken = verify_chain(entries, head).broken
    assert broken is not None
    assert (broken.kind, broken.position, broken.entry_id, broken.seq) == ("modified", 2, "3-0", 3)


def test_an_entry_rewritten_with_its_hash_recomputed_breaks_the_next_link() -> None:
    entries, head = make_chain(5)
    text = entries[1].entry.replace("entry 2", "entry 7")
    entries[1] = replace(entries[1], entry=text, hash=entry_hash(entries[0].hash, text))
    broken = verify_chain(entries, head).broken
    assert broken is not None
    assert (broken.kind, broken.position, broken.seq) == ("modified", 1, 2)


def test_a_rewritten_seq_that_still_links_is_a_modification() -> None:
    entries, head = make_chain(4)
    text = entries[1].entry.replace('"seq":2', '"seq":3')
    entries[1] = replace(entries[1], entry=text, hash=entry_hash(entries[0].hash, text))
    broken = verify_chain(entries, head).broken
    assert broken is not None
    assert (broken.kind, broken.position) == ("modified", 1)


def test_the_last_entry_rewritten_is_caught_by_the_head_kept_apart() -> None:
    entries, head = make_chain(3)
    text = entries[2].entry.replace("entry 3", "entry 0")
    entries[2] = replace(entries[2], entry=text, hash=entry_hash(entries[1].hash, text))
    broken = verify_chain(entries, head).broken
    assert broken is not None
    assert (broken.kind, broken.position) == ("modified", 2)
    assert "chain head" in broken.detail


def test_unreadable_json_is_a_modification() -> None:
    entries, head = make_chain(3)
    entries[0] = replace(entries[0], entry="{not json")
    broken = verify_chain(entries, head).broken
    assert broken is not None
    assert (broken.kind, broken.position) == ("modified", 0)


@pytest.mark.parametrize(
    ("gone", "position", "detail"),
    [
        ({0}, 0, "seq 1 missing before entry seq 2"),
        ({2, 3}, 2, "seq 3..4 missing before entry seq 5"),
    ],
)
def test_deleted_entries_are_named(gone: set[int], position: int, detail: str) -> None:
    entries, head = make_chain(6)
    kept = [e for i, e in enumerate(entries) if i not in gone]
    broken = verify_chain(kept, head).broken
    assert broken is not None
    assert (broken.kind, broken.position, broken.detail) == ("deleted", position, detail)


def test_swapped_entries_are_a_reordering() -> None:
    entries, head = make_chain(5)
    entries[1], entries[3] = entries[3], entries[1]
    broken = verify_chain(entries, head).broken
    assert broken is not None
    assert (broken.kind, broken.position, broken.seq) == ("reordered", 1, 4)


def test_a_replayed_entry_is_an_insertion() -> None:
    entries, head = make_chain(4)
    broken = verify_chain([*entries[:3], entries[1], entries[3]], head).broken
    assert broken is not None
    assert (broken.kind, broken.position) == ("inserted", 3)


def test_lost_tail_entries_are_a_truncation_even_with_the_head_moved() -> None:
    entries, head = make_chain(6)
    for moved in (head, Head(entries[3].hash, head.version)):
        broken = verify_chain(entries[:4], moved).broken
        assert broken is not None
        assert (broken.kind, broken.position, broken.seq) == ("truncated", 4, 5)
    broken = verify_chain([], head).broken
    assert broken is not None
    assert (broken.kind, broken.position) == ("truncated", 0)


def test_entries_past_the_head_and_a_missing_state_are_reported() -> None:
    entries, _ = make_chain(4)
    broken = verify_chain(entries, Head(entries[2].hash, 3)).broken
    assert broken is not None
    assert (broken.kind, broken.position) == ("inserted", 3)
    broken = verify_chain(entries, Head(None, 0)).broken
    assert broken is not None
    assert broken.kind == "head_missing"


# --- who may read ----------------------------------------------------------------


def test_a_token_opens_its_own_clinic_only() -> None:
    access = ClinicAccess({"a": SecretStr("tok-a"), "b": SecretStr("tok-b"), "c": SecretStr("")})
    assert [access.clinic_for(t) for t in ("tok-a", "tok-b", "", None, "tok-", "TOK-A")] == [
        "a", "b", None, None, None, None,
    ]  # fmt: skip


def test_the_token_comes_from_a_bearer_header_only() -> None:
    assert presented_token({"authorization": "Bearer abc"}) == "abc"
    assert presented_token({"authorization": "bearer  abc "}) == "abc"
    assert presented_token({"authorization": "Basic abc"}) is None
    # The cookie holds a signed physio session, never a clinic token (issue 17).
    assert presented_token({"cookie": "x=1; rehabgate_physio=a%3Bb"}) is None
    assert presented_token({}) is None
