"""Where the gatekeeper's time goes: pyinstrument over its batch processing.

`make bench` runs this whenever the gatekeeper misses its throughput goal (issue 9
accepts a missed goal only with a profile that shows where the time goes), and it
runs alone as `python -m bench.profile` (size: BENCH_PROFILE_CLIENTS, default 3000).

It applies the benchmark's workload (enrolments, then a session and a check-in per
client) with `process_batch` in batches of 100, as one gatekeeper process does,
against a private Redis of its own: what is measured is the gatekeeper's work per
event, the same on one server or a cluster. FastStream's reading and acking are
not in it; they cost about 15 µs per event (the issue's anchors: 50-70k events/s
with a no-op batch handler).

The file has three parts: the share of each step of an event, with what would
make that step cheaper; the functions with the most own time; and the call tree.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame
from redis.asyncio import Redis

from bench import measure
from bench.workload import events
from rehabgate.services.common.redis_server import EmbeddedRedis
from rehabgate.services.gatekeeper.domain import Protocol
from rehabgate.services.gatekeeper.process import Entry, process_batch
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.gatekeeper.store import RedisClientStore

OUT = Path(__file__).parent / "results" / "profile-gatekeeper.txt"
LATENCY_OUT = Path(__file__).parent / "results" / "profile-latency.txt"
BATCH = 100

#: The steps of one event (file and function in the call tree) and what would cut each.
STEPS = {
    ("process.py", "parse_entry"): "validating the inbound JSON with pydantic (Rust); only "
    "a leaner schema would cut it",
    ("store.py", "load"): "one read-only script call per partition and batch, and "
    "validating each client's state JSON; a binary state encoding would cut the latter",
    ("process.py", "_decide"): "the pure domain: pydantic models for records, criterion "
    "results and the decision, built anew per event; plain slotted classes (an internal "
    "twin of the contract's models) or compiled code would cut it by half or more",
    ("process.py", "_commit_for"): "serialising the event, decision and audit entry to "
    "JSON and hashing the entry; each is serialised once already",
    ("store.py", "commit"): "compressing the audit entry (about 20 µs) and serialising "
    "the state; the script calls are packed by hiredis and sent on one connection, and "
    "the Lua steps run while this process waits (sending them in groups while the rest "
    "of the batch is decided was measured: no gain, the process is CPU-bound)",
}


async def _apply(url: str, entries: list[Entry], protocols: Mapping[str, Protocol]) -> None:
    redis = Redis.from_url(url)
    store = RedisClientStore(redis, partitions=1)
    try:
        for start in range(0, len(entries), BATCH):
            await process_batch(entries[start : start + BATCH], store, protocols)
    finally:
        await redis.aclose()


def _step_times(root: Frame | None) -> dict[tuple[str, str], float]:
    """Seconds spent in each step, counting a recursive or nested call once."""
    times = dict.fromkeys(STEPS, 0.0)

    def walk(frame: Frame, inside: frozenset[tuple[str, str]]) -> None:
        step = (Path(frame.file_path or "").name, frame.function)
        if step in times and step not in inside:
            times[step] += frame.time
            inside = inside | {step}
        for child in frame.children:
            walk(child, inside)

    if root is not None:
        walk(root, frozenset())
    return times


def profile_gatekeeper(clients: int) -> Path:
    """Profile `clients` clients' events (three each) and write OUT; returns its path."""
    payloads = [p.encode() for p in events(clients, days=1, seed=1)]
    entries = [Entry(f"{n}-0", {b"event": p}) for n, p in enumerate(payloads, start=1)]
    protocols = load_protocols()
    profiler = Profiler(interval=0.0005, async_mode="disabled")
    with EmbeddedRedis(appendonly=False) as server:
        profiler.start()
        started = time.perf_counter()
        asyncio.run(_apply(server.url, entries, protocols))
        seconds = time.perf_counter() - started
        profiler.stop()
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    total = root.time if root is not None else seconds
    lines = [
        "Gatekeeper batch processing, profiled (bench/profile.py, pyinstrument)",
        f"{len(entries)} events ({clients} clients), batches of {BATCH}, one process: "
        f"{len(entries) / seconds:,.0f} events/s under the profiler, "
        f"{seconds / len(entries) * 1e6:.0f} µs per event",
        "",
        "Where an event's time goes (share of the profiled time; what would cut it):",
    ]
    for step, spent in _step_times(root).items():
        lines.append(f"  {step[1]:<12} {spent / total:6.1%}  {STEPS[step]}")
    lines += [
        "",
        "Waiting for Redis shows as `select` under the event loop: the server runs each "
        "batch's script calls while this process waits.",
        "",
        "== Functions by own time ==",
        profiler.output_text(flat=True, flat_time="self"),
        "== Call tree ==",
        profiler.output_text(),
    ]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines))
    return OUT


#: Functions per list in the per-process summaries.
TOP = 25
#: A frame's line number: one function is one row, whichever line was sampled.
_LINE_NUMBER = re.compile(r":\d+\)$")
#: Frames every sample of a service passes through (its entry point and the event
#: loop's own), left out of the inclusive list.
_RUNNER_FRAMES = ("<frozen runpy>", "asyncio/runners.py", "asyncio/base_events.py",
                  "asyncio/events.py", "services/cli/main.py")  # fmt: skip


def collapsed_top(raw: str, top: int = TOP) -> list[str]:
    """py-spy's collapsed stacks (`frame;frame;... count` lines) as two top lists:
    functions by own samples (the innermost frame) and by samples anywhere on the
    stack, each with its share of the samples."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if not any(part in frame for part in _RUNNER_FRAMES):
                anywhere[frame] += int(count)
    if not total:
        return ["  (no samples)"]
    lines = [f"  {total} samples; by own time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["  by time anywhere on the stack:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in anywhere.most_common(top)]
    return lines


def profile_latency(
    url: str,
    rate: int,
    seconds: float,
    gatekeepers: int,
    payloads: list[str] | None = None,
    workload: str = "one-day workload",
) -> Path:
    """A latency run at `rate` with every service process sampled by py-spy: where a
    message's time goes (gatekeeper, then notifier, from the summary's split) and
    what each process spends its time on. `payloads`: the events to publish on the
    server as it is (measure.latency), named by `workload`. Writes LATENCY_OUT;
    returns its path."""
    with tempfile.TemporaryDirectory() as spied:
        run = measure.latency(url, rate, seconds, gatekeepers, py_spy_to=Path(spied),
                              payloads=payloads, drain_s=600)  # fmt: skip
        summary = run.summary()
        lines = [
            f"End-to-end latency under py-spy (bench/profile.py; py-spy 200 Hz, nonblocking), "
            f"{workload}",
            f"{rate} events/s for {seconds:g} s, {gatekeepers} gatekeepers, 1 notifier: "
            f"message p50 {summary['message_p50_ms']} ms, p99 {summary['message_p99_ms']} ms "
            f"= decision p99 {summary['decision_p99_ms']} ms (publish -> evaluated) + "
            f"notifier p99 {summary['notifier_p99_ms']} ms (evaluated -> message).",
            "The sampler costs CPU on a 2-core machine: these latencies are higher than "
            "an unsampled run's.",
        ]
        for name in sorted(os.listdir(spied)):
            lines += ["", f"== {name.removesuffix('.txt')} ==", *collapsed_top(
                (Path(spied) / name).read_text())]  # fmt: skip
    LATENCY_OUT.write_text("\n".join(lines) + "\n")
    return LATENCY_OUT


if __name__ == "__main__":
    written = profile_gatekeeper(int(os.environ.get("BENCH_PROFILE_CLIENTS", "3000")))
    print(f"wrote {written}")
    sys.exit(0)
