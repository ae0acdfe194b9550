"""Issue 5: the audit trail is tamper-evident and readable.

A real history (tests/audit_histories.py) is applied through the real use case on a
real Redis and read back; then 1,000 random tamperings of each kind are made on
copies in memory and handed to the pure verifier (fast), and a few are made on
Redis itself and caught by `rehabgate audit verify`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from rehabgate.services.cli.main import main
from rehabgate.services.gatekeeper.audit.codec import decode_entry, encode_entry
from rehabgate.services.gatekeeper.audit.export import CSV_COLUMNS
from rehabgate.services.gatekeeper.audit.history import build_timeline
from rehabgate.services.gatekeeper.audit.reading import ClientAudit
from rehabgate.services.gatekeeper.audit.verify import (
    Head,
    StoredEntry,
    Verdict,
    entry_hash,
    verify_chain,
)
from tests.audit_histories import stored_history

pytestmark = pytest.mark.integration
TAMPERINGS = 1000
Chain = tuple[list[StoredEntry], Head]


def history_on(url: str, client: str | None = None) -> ClientAudit:
    return stored_history(url, client)


@pytest.fixture(scope="module")
def stored(redis_url: str) -> ClientAudit:
    return history_on(redis_url)


# --- the pure verifier against random tamperings ------------------------------------

VALUE = re.compile(
    r'"(?P<key>[a-z_]+)":(?P<value>-?\d+(?:\.\d+)?|true|false|null|"(?:[^"\\]|\\.)*")'
)


def _other(value: str, rng: random.Random) -> str:
    if value in ("true", "false"):
        return "false" if value == "true" else "true"
    if value == "null":
        return str(rng.randint(0, 9))
    if value.startswith('"'):
        return json.dumps(json.loads(value) + rng.choice(["x", " ", "0"]))
    return str(int(float(value)) + rng.randint(1, 9))


def modify(chain: Chain, rng: random.Random) -> tuple[Chain, int]:
    """Change one value of one entry, in place of its text (the JSON stays valid and
    in the same form). Then, at random: leave the hash, recompute it (an attacker who
    knows the scheme), or change only the stored hash."""
    entries, head = list(chain[0]), chain[1]
    i = rng.randrange(len(entries))
    target = entries[i]
    how = rng.choice(["content", "content+rehash", "hash-only"])
    if how == "hash-only":
        entries[i] = replace(target, hash=hashlib.sha256(rng.randbytes(8)).hexdigest())
        return (entries, head), i
    tokens = [
        m for m in VALUE.finditer(target.entry)
        if how == "content" or m["key"] != "prev_hash"  # a relinked entry breaks the link before it
    ]  # fmt: skip
    m = rng.choice(tokens)
    text = (
        target.entry[: m.start("value")] + _other(m["value"], rng) + target.entry[m.end("value") :]
    )
    new_hash = target.hash
    if how == "content+rehash":
        new_hash = entry_hash(json.loads(text)["prev_hash"], text)
    entries[i] = replace(target, entry=text, hash=new_hash)
    return (entries, head), i


def delete(chain: Chain, rng: random.Random) -> tuple[Chain, int]:
    """Delete 1-5 entries anywhere but at the very end (that is truncation)."""
    entries, head = chain
    gone = set(rng.sample(range(len(entries) - 1), rng.randint(1, 5)))
    return ([e for i, e in enumerate(entries) if i not in gone], head), min(gone)


def reorder(chain: Chain, rng: random.Random) -> tuple[Chain, int]:
    """Swap two entries, or move one entry elsewhere."""
    entries = list(chain[0])
    i, j = sorted(rng.sample(range(len(entries)), 2))
    if rng.random() < 0.5:
        entries[i], entries[j] = entries[j], entries[i]
    elif rng.random() < 0.5:
        entries.insert(j, entries.pop(i))
    else:
        entries.insert(i, entries.pop(j))
    return (entries, chain[1]), i


def truncate(chain: Chain, rng: random.Random) -> tuple[Chain, int]:
    """Drop the last 1..all entries; half the time also point the head at the new last
    entry (but the state's version still counts every applied event)."""
    entries, head = chain
    keep = rng.randrange(len(entries))
    kept = entries[:keep]
    if rng.random() < 0.5 and kept:
        head = Head(kept[-1].hash, head.version)
    return (kept, head), keep


@pytest.mark.parametrize(
    ("tamper", "kind"),
    [(modify, "modified"), (delete, "deleted"), (reorder, "reordered"), (truncate, "truncated")],
)
def test_every_random_tampering_is_detected_and_located(
    stored: ClientAudit, tamper: Callable[[Chain, random.Random], tuple[Chain, int]], kind: str
) -> None:
    chain: Chain = (list(stored.entries), stored.head)
    assert verify_chain(*chain).ok
    rng = random.Random(f"tamper-{kind}")
    seen: Counter[str] = Counter()
    for _ in range(TAMPERINGS):
        (entries, head), position = tamper(chain, rng)
        verdict = verify_chain(entries, head)
        assert verdict.broken is not None, "tampering not detected"
        assert (verdict.broken.kind, verdict.broken.position) == (kind, position), verdict
        seen[verdict.broken.kind] += 1
    print(f"\n{kind}: {seen[kind]}/{TAMPERINGS} detected and located over {len(chain[0])} entries")
    assert seen == {kind: TAMPERINGS}


# --- on Redis, through the command line ---------------------------------------------


def rewrite_stream(
    r: redis.Redis,
    key: str,
    edit: Callable[
        [list[tuple[bytes, dict[bytes, bytes]]]], list[tuple[bytes, dict[bytes, bytes]]]
    ],
) -> None:
    """What an attacker with write access does: rebuild the stream with edited entries
    (stream ids must grow, so the edited list is re-added with fresh ids) and swap it in."""
    rows = edit(r.xrange(key))
    tmp = f"{key}:tampering"
    r.delete(tmp)
    for _, fields in rows:
        r.xadd(tmp, fields)
    r.rename(tmp, key)


def verify(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    code = main(["audit", "verify", *args])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("kind", ["modified", "deleted", "reordered", "truncated"])
def test_audit_verify_catches_tampering_on_redis(
    redis_url: str, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], kind: str,
) -> None:  # fmt: skip
    audit = history_on(redis_url)
    client, key = audit.client_id, audit.keys.audit
    assert verify(redis_url, monkeypatch, capsys, client) == (
        0,
        f"OK      {client}: {len(audit.entries)} entries, chain head matches\n",
    )

    if kind == "modified":  # a physio's reason softened after the fact

        def soften(
            rows: list[tuple[bytes, dict[bytes, bytes]]],
        ) -> list[tuple[bytes, dict[bytes, bytes]]]:
            edited = (
                decode_entry(f[b"entry"]).replace("Travelling", "Traveling") for _, f in rows
            )
            return [
                (i, {**f, b"entry": encode_entry(text)})
                for (i, f), text in zip(rows, edited, strict=True)
            ]

        rewrite_stream(sync_redis, key, soften)
    elif kind == "deleted":  # the flagging check-in disappears
        flagged = next(e.entry_id for e in audit.entries if '"outcome":"flagged"' in e.entry)
        sync_redis.xdel(key, flagged)
    elif kind == "reordered":
        rewrite_stream(sync_redis, key, lambda rows: [rows[0], rows[2], rows[1], *rows[3:]])
    else:
        for entry in audit.entries[-3:]:
            sync_redis.xdel(key, entry.entry_id)

    code, out = verify(redis_url, monkeypatch, capsys, client)
    assert code == 1
    assert out.startswith(f"BROKEN  {client}: {kind} at entry seq "), out


def test_audit_verify_all_scans_every_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a database of its own: every client gets a line; one broken chain fails the run."""
    parts = urlsplit(redis_url)
    own = urlunsplit(parts._replace(path="/9"))
    r = redis.Redis.from_url(own)
    r.flushdb()
    try:
        good, bad = history_on(own, "verify-all-good"), history_on(own, "verify-all-bad")
        assert verify(own, monkeypatch, capsys, "--all") == (
            0,
            f"OK      verify-all-bad: {len(bad.entries)} entries, chain head matches\n"
            f"OK      verify-all-good: {len(good.entries)} entries, chain head matches\n"
            "2 clients checked, 0 broken\n",
        )
        r.xdel(bad.keys.audit, bad.entries[5].entry_id)
        code, out = verify(own, monkeypatch, capsys, "--all")
        assert code == 1
        lines = out.splitlines()
        assert lines[0].startswith("BROKEN  verify-all-bad: deleted at entry seq 7 ")
        assert lines[1].startswith("OK      verify-all-good:")
        assert lines[2] == "2 clients checked, 1 broken"
    finally:
        r.flushdb()
        r.close()


def test_audit_verify_names_an_unknown_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert main(["audit", "verify", "nobody-here"]) == 2
    assert capsys.readouterr().err == "rehabgate audit verify: no client nobody-here\n"


# --- reading the history --------------------------------------------------------------


def test_timeline_explains_every_decision(stored: ClientAudit) -> None:
    timeline = build_timeline(stored.client_id, stored.entries)
    items = timeline.items
    assert [i.seq for i in items] == list(range(1, stored.head.version + 1))
    assert timeline.clinic_id == "clinic-a"
    outcomes = [(i.event_type, i.outcome) for i in items if i.outcome != "held"]
    assert outcomes == [
        ("client.enrolled", "unlocked"),
        ("checkin.logged", "flagged"),
        ("checkin.logged", "unlocked"),
        ("session.logged", "regressed"),
        ("clinician.action", "unlocked"),
    ]
    unlock = next(i for i in items if i.outcome == "unlocked" and i.stage_changed)
    assert (unlock.stage_before, unlock.stage_after, unlock.decided_by) == (
        "start-loading",
        "start-strengthening",
        "rules",
    )
    assert {c.role for c in unlock.criteria} >= {"exit", "safety"}
    assert all(c.status == "passed" for c in unlock.criteria if c.role == "exit")

    override = next(i for i in items if i.clinician_action == "advance_override")
    assert (override.decided_by, override.clinician_id) == ("clinician", "physio-7")
    assert override.clinician_reason == "Flare settled, seen today"
    assert override.rules_verdict is not None
    assert override.rules_verdict.startswith("rules alone: would hold")
    assert (override.stage_before, override.stage_after) == (
        "start-loading",
        "start-strengthening",
    )


def test_a_resent_session_supersedes_and_counts_once_in_the_chart(stored: ClientAudit) -> None:
    timeline = build_timeline(stored.client_id, stored.entries)
    first, again = [i for i in timeline.items if i.session and i.session.session_id == "s19"]
    assert (first.superseded_by, again.supersedes) == (again.seq, first.seq)
    charted = [s for s in timeline.sessions if s.session_id == "s19"]
    assert [s.pain_during for s in charted] == [4]
    assert len(timeline.sessions) == len({s.session_id for s in timeline.sessions})
    s5 = next(s for s in timeline.sessions if s.session_id == "s5")
    assert (s5.pain_during, s5.next_morning_pain) == (3, 3)
    assert s5.volume == 3 * (10 + 5 // 3) * 2.0  # reps x kg over three sets


def history(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    monkeypatch.setenv("REDIS_URL", redis_url)
    code = main(["history", *args])
    return code, capsys.readouterr().out


def test_history_command_prints_a_table_json_or_csv(
    redis_url: str, stored: ClientAudit, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    client = stored.client_id
    code, table = history(redis_url, monkeypatch, capsys, client)
    assert code == 0
    lines = table.splitlines()
    assert lines[0].startswith(
        f"{client} · clinic clinic-a · achilles-tendinopathy@1 · now start-strengthening (on_hold) · chain intact"
    )
    assert (
        "↳ clinician physio-7 (advance_override): Flare settled, seen today; rules alone: would hold"
        in table
    )
    assert "start-loading → start-strengt" in table

    code, out = history(redis_url, monkeypatch, capsys, client, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["chain"]["ok"] is True
    assert [i["seq"] for i in document["items"]] == list(range(1, stored.head.version + 1))

    code, out = history(redis_url, monkeypatch, capsys, client, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == stored.head.version

    assert main(["history", "nobody-here"]) == 2
    assert capsys.readouterr().err == "rehabgate history: no client nobody-here\n"


def test_verdict_of_the_stored_history_is_ok(stored: ClientAudit) -> None:
    assert verify_chain(stored.entries, stored.head) == Verdict(
        stored.head.version, stored.head.version, None
    )
