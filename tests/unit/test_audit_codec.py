"""Audit entries are stored deflated against a preset dictionary (audit/codec.py):
small, read back exactly, and stored bytes that were tampered with read as an entry
the verifier reports, never as a different valid entry."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

from rehabgate.services.gatekeeper.audit import codec
from rehabgate.services.gatekeeper.audit.verify import Head, StoredEntry, verify_chain
from rehabgate.services.gatekeeper.store import GENESIS, chain

#: An entry like the ones the dictionary holds, with other ids and values.
SAMPLE = json.loads(Path(codec.__file__).with_name("entry_dictionary_1.json").read_text())[-1]


def _entry(seq: int, previous: str) -> tuple[str, str]:
    parts = {
        k: json.dumps(v, separators=(",", ":")) for k, v in SAMPLE.items() if k != "prev_hash"
    }
    parts["seq"] = str(seq)
    parts["event"] = parts["event"].replace("client-1", f"client-{seq}")
    return chain(previous, parts)


def test_an_entry_is_stored_in_a_tenth_of_its_json_and_read_back_exactly() -> None:
    text, _ = _entry(7, GENESIS)
    stored = codec.encode_entry(text)
    assert len(stored) < len(text) / 10
    assert codec.decode_entry(stored) == text


def test_plain_json_entries_are_read_as_they_are() -> None:
    text, _ = _entry(1, GENESIS)
    assert codec.decode_entry(text.encode()) == text


def test_tampered_stored_bytes_are_reported_as_a_modified_entry() -> None:
    rng = random.Random("codec")
    entries, previous = [], GENESIS
    for seq in range(1, 4):
        text, digest = _entry(seq, previous)
        entries.append(StoredEntry(f"{seq}-0", text, digest))
        previous = digest
    stored = codec.encode_entry(entries[1].entry)
    for _ in range(200):
        flipped = bytearray(stored)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        edited = replace(entries[1], entry=codec.decode_entry(bytes(flipped)))
        verdict = verify_chain([entries[0], edited, entries[2]], Head(previous, 3))
        assert verdict.broken is not None
        assert (verdict.broken.kind, verdict.broken.position) == ("modified", 1)


def test_bytes_appended_to_a_stored_entry_make_it_unreadable() -> None:
    text, _ = _entry(1, GENESIS)
    assert codec.decode_entry(codec.encode_entry(text) + b"x") != text
