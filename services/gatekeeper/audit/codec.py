"""How an audit entry is kept in Redis: its JSON, deflated against a preset dictionary.

An entry's JSON (event, decision with every criterion, stage and status after) is
about 4.5 KB, and nearly all of it is field names, protocol texts and criterion
wording that every entry repeats. Compressed alone, an entry only shrinks to
about 1.5 KB; deflated against a dictionary of typical entries it is about 300
bytes (the bench's `audit_bytes_per_session_event`, goal <= 2 KB).

The hash chain is over the JSON text, not over the stored bytes (audit/verify.py
reads decoded entries), so the chain, its verification and every reader see the
same entries as before. Stored bytes that do not inflate are handed on as text
that is not an audit entry, which the verifier reports as a modified entry.

The dictionary is `entry_dictionary_1.json` (an enrolment, a clinician action, a
check-in and a session of the shipped Achilles protocol). Entries written with it
can only be read with it: never edit the file. A better dictionary is a new file
beside it, chosen by the DICTID that zlib writes into each stream's header.
"""

from __future__ import annotations

import zlib
from pathlib import Path

#: zlib's DICTID (the Adler-32 of the dictionary) -> dictionary file.
_DICTIONARIES = {0xDC426EEF: "entry_dictionary_1.json"}
#: The dictionary new entries are written with.
_CURRENT = 0xDC426EEF
#: Level 3: as fast as level 1 against this dictionary, and within 15% of level 6 in size.
LEVEL = 3


def _load(dictid: int) -> bytes:
    data = (Path(__file__).parent / _DICTIONARIES[dictid]).read_bytes()
    if zlib.adler32(data) != dictid:
        raise RuntimeError(
            f"{_DICTIONARIES[dictid]} was changed: the audit entries written with it "
            "cannot be read any more; restore the file"
        )
    return data


_DICTIONARY = {dictid: _load(dictid) for dictid in _DICTIONARIES}
#: Primed once: copying a compressor that already holds the dictionary is cheaper
#: than setting the dictionary again for every entry.
_PRIMED = zlib.compressobj(LEVEL, zdict=_DICTIONARY[_CURRENT])


def encode_entry(entry_json: str) -> bytes:
    """The bytes to store for an entry whose JSON is `entry_json`."""
    compressor = _PRIMED.copy()
    return compressor.compress(entry_json.encode()) + compressor.flush()


def decode_entry(stored: bytes) -> str:
    """The JSON text of a stored entry. Plain JSON (entries stored before they were
    compressed, and the erasure ledger's, which are tiny) is read as it is."""
    if stored[:1] == b"{":
        return stored.decode(errors="replace")
    try:
        dictionary = _DICTIONARY[int.from_bytes(stored[2:6], "big")]
        inflater = zlib.decompressobj(zdict=dictionary)
        text = inflater.decompress(stored) + inflater.flush()
        if not inflater.eof or inflater.unused_data:
            raise zlib.error("truncated, or bytes after the end")
        return text.decode()
    except (KeyError, zlib.error, UnicodeDecodeError):
        return stored.decode(errors="replace")  # not an entry: the verifier says so
