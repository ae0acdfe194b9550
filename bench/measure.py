"""The benchmark's measurements, each against a running Redis. Every number is
taken in the same run as the raw consume-and-ack ceiling it is compared with."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import redis

from bench.workload import BENCH_CLINIC, Realistic, events
from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_stream,
    partition_of,
)
from rehabgate.services.common.connections import SyncRedisClient, async_client, sync_client
from rehabgate.services.common.settings import Settings

RAW_STREAM = "bench:raw"


def connect(url: str) -> SyncRedisClient:
    """A client for one server, or for a cluster under `make bench CLUSTER=1` (which
    sets REHABGATE_REDIS_CLUSTER and REHABGATE_PARTITIONS for us and the services)."""
    return sync_client(url, Settings().redis_cluster)


def partitions() -> range:
    return range(Settings().partitions)


def fill(client: SyncRedisClient, stream: str, payloads: Iterable[str]) -> int:
    """XADD every payload (pipelined, 1,000 at a time); the number added."""
    added = 0
    pipe = client.pipeline(transaction=False)
    for index, payload in enumerate(payloads, start=1):
        pipe.xadd(stream, {"event": payload})
        if index % 1000 == 0:
            added += len(pipe.execute())
    return added + len(pipe.execute())


async def raw_loop(url: str, n: int) -> float:
    """The ceiling: XREADGROUP COUNT 100 + pipelined XACK, no work (as in the anchors)."""
    sync = connect(url)
    sync.delete(RAW_STREAM)
    fill(sync, RAW_STREAM, [json.dumps({"i": i, "pain": 3}) for i in range(n)])
    sync.xgroup_create(RAW_STREAM, "g", id="0")
    r = async_client(url, Settings().redis_cluster)
    done, start = 0, time.perf_counter()
    while done < n:
        reply = await r.xreadgroup("g", "c", {RAW_STREAM: ">"}, count=100, block=1000)
        if not reply:
            break
        ids = [entry_id for entry_id, _ in reply[0][1]]
        await r.xack(RAW_STREAM, "g", *ids)
        done += len(ids)
    rate = done / (time.perf_counter() - start)
    await r.aclose()
    sync.delete(RAW_STREAM)
    return rate


#: How long the services get to exit after SIGTERM before they are killed. A
#: gatekeeper deep in a backlog can take a while; the bench's numbers are taken
#: by then, so a slow exit is reported, never fatal.
STOP_TIMEOUT_S = 90.0

#: Every service the bench had to SIGKILL: (service, consumer, pid, seconds waited).
forced_stops: list[tuple[str, str, int, float]] = []


@contextmanager
def services(url: str, gatekeepers: int, notifiers: int) -> Iterator[dict[str, list[int]]]:
    env = {**os.environ, "REDIS_URL": url, "REHABGATE_LOG_LEVEL": "WARNING"}
    procs: dict[str, list[subprocess.Popen[bytes]]] = {"gatekeeper": [], "notifier": []}
    try:
        for service, count in (("gatekeeper", gatekeepers), ("notifier", notifiers)):
            for n in range(count):
                procs[service].append(subprocess.Popen(
                    [sys.executable, "-m", "rehabgate.services.cli.main", service],
                    env={**env, "REHABGATE_CONSUMER": f"bench-{service}-{n}"},
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))  # fmt: skip
        yield {k: [p.pid for p in v] for k, v in procs.items()}
    finally:
        stop(procs)


def stop(procs: dict[str, list[subprocess.Popen[bytes]]], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to every service, then up to `timeout` seconds (in all) for them to
    exit; any still running then is SIGKILLed and reported on stderr (and in
    `forced_stops`) instead of failing the bench."""
    running = [(service, n, p) for service, group in procs.items() for n, p in enumerate(group)]
    for _, _, process in running:
        if process.poll() is None:
            process.terminate()
    start = time.monotonic()
    for service, n, process in running:
        try:
            process.wait(timeout=max(0.0, start + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            waited = time.monotonic() - start
            consumer = f"bench-{service}-{n}"
            forced_stops.append((service, consumer, process.pid, waited))
            print(
                f"bench: {service} {consumer} (pid {process.pid}) did not exit within "
                f"{timeout:g} s of SIGTERM; killed it (SIGKILL)",
                file=sys.stderr,
                flush=True,
            )


def group_state(client: SyncRedisClient, stream: str, group: str) -> dict[str, int]:
    try:
        groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    except redis.ResponseError:
        return {"read": 0, "lag": -1, "pending": -1}
    g = groups.get(group)
    if g is None:
        return {"read": 0, "lag": -1, "pending": -1}
    return {"read": int(g.get("entries-read") or 0), "lag": int(g.get("lag") or 0),
            "pending": int(g["pending"])}  # fmt: skip


def wait_drained(
    client: SyncRedisClient, total: int, timeout: float, after: int = 0
) -> tuple[float, float]:
    """(time the first entry was read, time all were read and acked), perf_counter.
    `total`: entries the group will have read in all; `after`: entries it had read
    before (a stream preloaded and drained earlier), so the first read is a new one."""
    first = None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        state = group_state(client, INBOUND, GATEKEEPER_GROUP)
        now = time.perf_counter()
        if first is None and state["read"] > after:
            first = now
        if state["read"] >= total and state["lag"] == 0 and state["pending"] == 0:
            return first or now, now
        time.sleep(0.02)
    raise TimeoutError(f"gatekeeper did not drain {total} events in {timeout}s")


#: Services that had not started reading when a measurement began: (service, seconds).
not_ready: list[tuple[str, float]] = []


def wait_ready(client: SyncRedisClient, pids: dict[str, list[int]], timeout: float = 60) -> None:
    """Until every service started by `services()` reads its stream: each gatekeeper
    is a consumer of the inbound group, each notifier of the first partition's
    evaluated group (a consumer appears with its first read, as `name` or as
    `name-claimer`). One still missing after `timeout` seconds is reported on
    stderr (and in `not_ready`) and the measurement goes on without waiting."""
    wanted = {
        (INBOUND, GATEKEEPER_GROUP): {f"bench-gatekeeper-{n}" for n in range(len(pids["gatekeeper"]))},
        (evaluated_stream(0), NOTIFIER_GROUP): {f"bench-notifier-{n}" for n in range(len(pids["notifier"]))},
    }  # fmt: skip
    deadline = time.perf_counter() + timeout
    missing: set[str] = set()
    while time.perf_counter() < deadline:
        missing = set()
        for (stream, group), names in wanted.items():
            try:
                present = {
                    c["name"].decode().removesuffix("-claimer")
                    for c in client.xinfo_consumers(stream, group)
                }
            except redis.ResponseError:  # no stream or group yet
                present = set()
            missing |= names - present
        if not missing:
            return
        time.sleep(0.05)
    for name in sorted(missing):
        not_ready.append((name, timeout))
        print(f"bench: {name} did not start reading within {timeout:g} s; going on",
              file=sys.stderr, flush=True)  # fmt: skip


def inbound_group(client: SyncRedisClient) -> None:
    """The gatekeepers' group on the inbound stream, made before they start on an
    empty server (two processes creating it at once can leave one not reading)."""
    try:
        client.xgroup_create(INBOUND, GATEKEEPER_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def flush(client: SyncRedisClient) -> None:
    """Empty the server before a measurement, synchronously: Valkey 8 frees a plain
    FLUSHALL in the background (lazyfree-lazy-user-flush), which would compete with
    the measurement for CPU and make a memory reading before it too high."""
    client.execute_command("FLUSHALL", "SYNC")


def gatekeeper_throughput(url: str, processes: int, clients: int, days: int) -> float:
    """Full processing rate of the workload, from the first read to the last ack,
    with `processes` gatekeepers, started (and reading) before it is XADDed (so
    their start-up is not in it; XADD is far faster than they are)."""
    client = connect(url)
    flush(client)
    payloads = list(events(clients, days, seed=processes))
    inbound_group(client)
    with services(url, processes, 0) as pids:
        wait_ready(client, pids)
        fill(client, INBOUND, payloads)
        first, last = wait_drained(client, len(payloads), timeout=600)
    return len(payloads) / (last - first)


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


@dataclass
class Latency:
    rate: int
    decision_ms: list[int]
    message_ms: list[int]
    rss_mb: dict[str, float]
    #: Per message, the notifier's share: message entry time - decision entry time.
    notifier_ms: list[int]

    def summary(self) -> dict[str, float | int]:
        def pct(values: list[int], q: float) -> float:
            return (
                float(statistics.quantiles(values, n=100)[int(q) - 1]) if len(values) > 1 else 0.0
            )

        return {
            "rate": self.rate,
            "decisions": len(self.decision_ms),
            "messages": len(self.message_ms),
            **{f"decision_p{q}_ms": pct(self.decision_ms, q) for q in (50, 95, 99)},
            **{f"message_p{q}_ms": pct(self.message_ms, q) for q in (50, 95, 99)},
            **{f"notifier_p{q}_ms": pct(self.notifier_ms, q) for q in (50, 99)},
        }


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def latency(
    url: str,
    rate: int,
    seconds: float,
    gatekeepers: int,
    py_spy_to: Path | None = None,
    payloads: Iterable[str] | None = None,
    drain_s: float = 120,
) -> Latency:
    """Publish at a fixed rate, then match each decision and message to its inbound
    entry. Latencies use Redis stream ids, i.e. the server's clock on both ends, with
    millisecond resolution. `payloads`: the events to publish, on the server as it is
    (e.g. clients preloaded to realistic days); by default the server is emptied and
    the one-day workload's first events are published (enrolments of new clients,
    each of which gets a welcome message). A late event's corrections of earlier
    decisions are not counted (their cause was published earlier). After the last
    publish the services get `drain_s` seconds to catch up. `py_spy_to`: a
    directory; each service process is sampled by py-spy while the events are
    published (<service>-<n>.txt, collapsed stacks)."""
    client = connect(url)
    if payloads is None:
        flush(client)
        inbound_group(client)
        payloads = events(clients=int(rate * seconds), days=1, seed=rate)
    else:  # a preloaded server: only what this run decides and sends is read back
        client.delete(*(f(p) for p in partitions() for f in (evaluated_stream,
                                                             client_messages_stream)))  # fmt: skip
    with services(url, gatekeepers, 1) as pids:
        wait_ready(client, pids)  # start-up is not what is measured
        spies = _py_spy(pids, seconds, py_spy_to) if py_spy_to is not None else []
        published: dict[str, int] = {}
        per_tick = rate / 100  # owed per 10 ms tick
        stream = iter(payloads)
        start = time.perf_counter()
        sent, owed = 0, 0.0
        while time.perf_counter() - start < seconds:
            owed += per_tick
            pipe = client.pipeline(transaction=False)
            batch = []
            while owed >= 1:
                payload = next(stream, None)
                if payload is None:
                    break
                batch.append(json.loads(payload)["event_id"])
                pipe.xadd(INBOUND, {"event": payload})
                owed -= 1
            for event_id, entry_id in zip(batch, pipe.execute(), strict=True):
                published[event_id] = _ms(entry_id)
            sent += len(batch)
            time.sleep(max(0.0, start + (sent / rate) - time.perf_counter()))
        deadline = time.perf_counter() + drain_s
        while time.perf_counter() < deadline:
            states = [group_state(client, INBOUND, GATEKEEPER_GROUP)]
            states += [
                group_state(client, evaluated_stream(p), NOTIFIER_GROUP) for p in partitions()
            ]
            if all(s["lag"] == 0 and s["pending"] == 0 for s in states):
                break
            time.sleep(0.1)
        rss = {service: max(rss_mb(pid) for pid in ids) for service, ids in pids.items()}
        for spy in spies:
            spy.wait(timeout=seconds + 30)
    decided: dict[str, int] = {}
    decided_at: dict[str, int] = {}
    decision_ms = []
    for entry_id, fields in (e for p in partitions() for e in client.xrange(evaluated_stream(p))):
        decision = json.loads(fields[b"event"])
        cause = decision["cause_event_id"]
        if cause in published and not decision.get("corrected_after"):
            decided[decision["decision_id"]] = published[cause]
            decided_at[decision["decision_id"]] = _ms(entry_id)
            decision_ms.append(_ms(entry_id) - published[cause])
    sent_at = {
        json.loads(fields[b"message"])["decision_id"]: _ms(entry_id)
        for p in partitions()
        for entry_id, fields in client.xrange(client_messages_stream(p))
    }
    message_ms = [at - decided[d] for d, at in sent_at.items() if d in decided]
    notifier_ms = [at - decided_at[d] for d, at in sent_at.items() if d in decided_at]
    return Latency(rate, decision_ms, message_ms, rss, notifier_ms)


def _py_spy(
    pids: dict[str, list[int]], seconds: float, out: Path
) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling every service process for `seconds`, without pausing it."""
    out.mkdir(parents=True, exist_ok=True)
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    record = ["record", "--duration", str(int(seconds)), "--rate", "200", "--nonblocking",
              "--format", "raw"]  # fmt: skip
    return [
        subprocess.Popen(
            [py_spy, *record, "--pid", str(pid), "--output", str(out / f"{service}-{n}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for service, ids in pids.items()
        for n, pid in enumerate(ids)
    ]


def storage(url: str, clients: int, days: int) -> dict[str, float]:
    """Redis memory per client, and audit bytes per session event, after a full run."""
    client = connect(url)
    flush(client)
    payloads = list(events(clients, days, seed=99))
    before = used_memory(client)
    fill(client, INBOUND, payloads)
    with services(url, 1, 0):
        wait_drained(client, len(payloads), timeout=600)
    client.delete(INBOUND)  # the benchmark's input, not what rehabgate stores
    used = used_memory(client) - before
    audit_bytes = entries = 0
    for key in client.scan_iter(match="rehabgate:*:audit", count=1000):
        audit_bytes += int(client.memory_usage(key, samples=0) or 0)
        entries += int(client.xlen(key))
    return {
        "redis_bytes_per_client": used / clients,
        "audit_bytes_per_session_event": audit_bytes / max(entries, 1),
    }


def used_memory(client: SyncRedisClient) -> int:
    """Bytes in use on the server, or on all the cluster's primaries together."""
    if isinstance(client, redis.RedisCluster):
        nodes = client.info("memory", target_nodes=redis.RedisCluster.PRIMARIES)
        return sum(int(info["used_memory"]) for info in nodes.values())
    return int(client.info("memory")["used_memory"])


def run_async(coro: object) -> float:
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- the HTTPS ingest (issue 18) ------------------------------------------------------


@contextmanager
def ingest_service(url: str) -> Iterator[tuple[str, str]]:
    """A real `rehabgate ingest` process (no rate limit to speak of, the shared stream)
    and an API key for the workload's clinic: (base URL, key)."""
    import httpx

    from rehabgate.services.common.redis_server import free_port

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "REHABGATE_CLINICS"},
        "REDIS_URL": url, "REHABGATE_LOG_LEVEL": "WARNING",
        "REHABGATE_INGEST_HTTP_PORT": str(port), "REHABGATE_INGEST_RATE_PER_S": "1e9",
        "REHABGATE_INGEST_BURST": "1000000000", "REHABGATE_INGEST_MAX_BATCH": "1000",
    }  # fmt: skip
    cli = [sys.executable, "-m", "rehabgate.services.cli.main"]
    issued = subprocess.run([*cli, "ingest-key", "issue", BENCH_CLINIC], env=env,
                            capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    key = issued.stdout.strip().splitlines()[-1]
    process = subprocess.Popen([*cli, "ingest"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("bench: the ingest did not become ready")
            time.sleep(0.1)
        yield base, key
    finally:
        stop({"ingest": [process]})


def ingest_throughput(url: str, total: int, batch: int = 100, concurrency: int = 8) -> float:
    """Events accepted per second by one ingest process, posted in batches of `batch`
    by `concurrency` connections at once (every answer must be 202)."""
    payloads = list(events(max(1, total), days=0))[:total]  # enrolments: distinct clients
    bodies = [
        ("[" + ",".join(payloads[i : i + batch]) + "]").encode()
        for i in range(0, len(payloads), batch)
    ]
    with ingest_service(url) as (base, key):
        return run_async(_post_all(base, key, bodies, concurrency)) * batch


class _Connections:
    """A small HTTP/1.1 keep-alive client over asyncio streams, so the load generator
    (on the same machine) spends as little CPU as it can and the numbers are the
    ingest's: `post(body)` -> status, on the first free of `size` connections."""

    def __init__(self, base: str, key: str, size: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port, self.size = host, int(port), size
        self.head = (
            f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        for _ in range(self.size):
            self.free.put_nowait(await asyncio.open_connection(self.host, self.port))

    async def post(self, body: bytes) -> int:
        reader, writer = await self.free.get()
        try:
            writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            return status
        finally:
            self.free.put_nowait((reader, writer))

    async def close(self) -> None:
        while not self.free.empty():
            _, writer = self.free.get_nowait()
            writer.close()


async def _post_all(base: str, key: str, bodies: list[bytes], concurrency: int) -> float:
    """Requests per second, all bodies posted over `concurrency` connections."""
    connections = _Connections(base, key, concurrency)
    await connections.open()
    queue = list(reversed(bodies))
    await connections.post(queue.pop())  # warm up
    done, start = 0, time.perf_counter()

    async def worker() -> None:
        nonlocal done
        while queue:
            status = await connections.post(queue.pop())
            if status != 202:
                raise RuntimeError(f"bench: ingest answered {status}")
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = done / (time.perf_counter() - start)
    await connections.close()
    return rate


def ingest_latency(url: str, rate: int, seconds: float) -> dict[str, float]:
    """Single events posted open-loop at `rate` per second for `seconds`: each
    request's time from when it was due (so a backlog counts) to its 202, after one
    second at the same rate that is not counted (the new process's first requests)."""
    total = int(rate * seconds)
    warm = [p.encode() for p in events(rate, days=0, seed=2)]  # one second, not counted
    payloads = [p.encode() for p in events(max(1, total), days=0)][:total]
    with ingest_service(url) as (base, key):
        asyncio.run(_open_loop(base, key, warm, rate))
        times = asyncio.run(_open_loop(base, key, payloads, rate))
    times.sort()
    return {
        "requests": len(times),
        "p50_ms": round(times[len(times) // 2] * 1000, 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, 1),
        "max_ms": round(times[-1] * 1000, 1),
    }


async def _open_loop(base: str, key: str, payloads: list[bytes], rate: int) -> list[float]:
    connections = _Connections(base, key, 64)
    await connections.open()
    await connections.post(payloads[0])  # warm up
    times: list[float] = []

    async def one(body: bytes, due: float) -> None:
        status = await connections.post(body)
        if status != 202:
            raise RuntimeError(f"bench: ingest answered {status}")
        times.append(time.perf_counter() - due)

    start = time.perf_counter()
    tasks = []
    for n, body in enumerate(payloads[1:]):
        due = start + n / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    await connections.close()
    return times


# -- the realistic workload (issue 19) ------------------------------------------------


def preload(url: str, workload: Realistic) -> tuple[int, float]:
    """Every event of `workload` up to its `today`, applied by two gatekeepers (not
    timed as a measurement): (entries on the inbound stream, seconds it took)."""
    client = connect(url)
    started = time.perf_counter()
    inbound_group(client)
    added = fill(client, INBOUND, workload.preload())
    with services(url, 2, 0):
        wait_drained(client, added, timeout=3600)
    return added, time.perf_counter() - started


def next_day(url: str, workload: Realistic, processes: int, read: int) -> tuple[int, float]:
    """Every client's next day of events, applied by `processes` fresh gatekeepers,
    started (and reading) before the day is XADDed; timed from their first read to
    the last ack. `read`: entries on the inbound stream before. (events, events per
    second)."""
    client = connect(url)
    day = workload.next_day()
    with services(url, processes, 0) as pids:
        wait_ready(client, pids)
        added = fill(client, INBOUND, day)
        first, last = wait_drained(client, read + added, timeout=1800, after=read)
    return added, added / (last - first)


@dataclass
class RealisticRun:
    """The realistic workload's throughput and latency runs, on one population."""

    clients: int
    preload_events: int
    preload_s: float
    day_events: dict[int, int]  # processes -> events of the day they applied
    events_per_s: dict[int, float]  # processes -> events per second
    latency: dict[int, Latency]
    days_published: dict[int, int]  # rate -> days of events its run published
    workload: Realistic
    #: Days each client is past its starting day when the runs are over.
    days_ahead: int = 0


def realistic(
    url: str, clients: int, rates: list[int], seconds: float, spare_s: float = 0
) -> RealisticRun:
    """Clients 1 to 84 days into the Achilles protocol (bench/workload.Realistic):
    preloaded to their day k (two gatekeepers, not timed), then one gatekeeper times
    every client's day k+1, two gatekeepers their day k+2, and then each latency run
    publishes the following days at its rate (two gatekeepers and a notifier), so
    its clients are at realistic days too. With few clients a run publishes several
    days: `days_published`. `spare_s`: seconds at the highest rate left over in the
    workload (`RealisticRun.workload`) for a profiled run on the same server."""
    per_day = 1.9 * clients  # sessions, check-ins and approvals per client and day
    spans = [*(rate * seconds for rate in rates), max(rates) * spare_s]
    extra = 2 + sum(math.ceil(events / per_day) + 1 for events in spans)
    workload = Realistic(clients, seed=19, extra_days=extra)
    client = connect(url)
    flush(client)
    read, took = preload(url, workload)
    preloaded = read
    print(f"realistic: {clients} clients preloaded ({read:,} events) in {took:.0f} s", flush=True)
    day_events, rates_of = {}, {}
    for processes in (1, 2):
        day_events[processes], rates_of[processes] = next_day(url, workload, processes, read)
        read += day_events[processes]
        print(f"realistic, {processes} gatekeeper(s): {rates_of[processes]:,.0f} events/s "
              f"({day_events[processes]:,} events of the next day)", flush=True)  # fmt: skip
    runs, days = {}, {}
    for rate in rates:
        payloads, days[rate] = workload.take(int(rate * seconds))
        runs[rate] = latency(url, rate, seconds, gatekeepers=2, payloads=payloads, drain_s=600)
        print(f"realistic latency at {rate}/s ({days[rate]} days of events): "
              f"{runs[rate].summary()}", flush=True)  # fmt: skip
    return RealisticRun(clients, preloaded, took, day_events, rates_of, runs, days, workload,
                        days_ahead=2 + sum(days.values()))  # fmt: skip


@dataclass
class DayCost:
    """Clients all at one day of the protocol: the gatekeeper's cost per event on
    their next day, and what they take in Redis."""

    day: int
    clients: int
    events: int
    us_per_event: float
    #: The client's own keys: state, checkpoints, audit trail, markers, owner.
    redis_bytes_per_client: float
    #: Its decisions on the evaluated stream: every one of the preload's is still
    #: there (a work stream keeps REHABGATE_RETENTION_S, 7 days, of entries, and the
    #: preload is minutes old); in service it holds about the last 7 days' only.
    evaluated_bytes_per_client: float
    workload: Realistic


def cost_at_day(url: str, clients: int, day: int) -> DayCost:
    """`clients` clients at protocol day `day`, preloaded (two gatekeepers), then one
    gatekeeper times their next day of events: its sessions, check-ins and approvals
    in order, without late arrivals (their cost is measured on its own:
    `late_events`). Redis memory per client is read after the preload, by MEMORY
    USAGE of every client key, and of the evaluated streams apart."""
    workload = Realistic(clients, seed=day, at_day=day, extra_days=1, late=0.0)
    client = connect(url)
    flush(client)
    read, _ = preload(url, workload)
    own = sum(_bytes(client, key) for key in client.scan_iter(match="*:client:*", count=1000))
    evaluated = sum(_bytes(client, evaluated_stream(p)) for p in partitions())
    events, rate = next_day(url, workload, 1, read)
    return DayCost(day, clients, events, 1e6 / rate, own / clients, evaluated / clients, workload)


def _bytes(client: SyncRedisClient, key: bytes | str) -> int:
    return int(client.memory_usage(key, samples=0) or 0)


def late_events(url: str, workload: Realistic, samples: int, ages: Sequence[int] = (1, 7)
                ) -> dict[int, list[int]]:  # fmt: skip
    """The cost of a late arrival, end to end: with one gatekeeper running (and idle),
    for `samples` clients per age, one session dated `age` days before the client's
    newest events (15:00 that day) is XADDed, and the time from its XADD to its own
    decision on the evaluated stream is taken from the two entries' Redis ids (server
    clock, millisecond resolution); one event at a time, each for another client.
    The workload's clients must have had their next day applied (`cost_at_day`),
    so their newest events are on `today` + 1, and be at least `max(ages)` days
    into the protocol. The first late event, for one more client, is not counted
    (a new process's first event). Milliseconds per age."""
    client = connect(url)
    ids = list(workload.days)
    newest = workload.today + timedelta(days=1)
    rng = random.Random(7)
    out: dict[int, list[int]] = {age: [] for age in ages}
    with services(url, 1, 0) as pids:
        wait_ready(client, pids)
        for n, client_id in enumerate(ids[: samples * len(ages) + 1], start=-1):
            age = ages[n % len(ages)]
            at = datetime.combine(newest - timedelta(days=age), dtime(15), UTC)
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            payload = json.dumps({"clinic_id": BENCH_CLINIC, "client_id": client_id,
                                  "event_id": event_id, "event_type": "session.logged",
                                  "occurred_at": at.isoformat(), "session_id": f"late-{n}",
                                  "pain_during": 2, "completed": True,
                                  "metrics": {"single_leg_heel_raise_reps": 20}})  # fmt: skip
            stream = evaluated_stream(partition_of(client_id, Settings().partitions))
            last = client.xrevrange(stream, count=1)
            since = last[0][0] if last else b"0-0"
            sent = _ms(client.xadd(INBOUND, {"event": payload}))
            took = _decided(client, stream, since, event_id) - sent
            if n >= 0:
                out[age].append(took)
    return out


def _decided(
    client: SyncRedisClient, stream: str, since: bytes, cause: str, timeout: float = 120
) -> int:
    """The Redis time (ms) of the decision caused by event `cause` on `stream`,
    read after entry `since` (blocking reads until it appears)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        for _, entries in client.xread({stream: since}, block=1000) or []:
            for entry_id, fields in entries:
                since = entry_id
                decision = json.loads(fields[b"event"])
                if decision["cause_event_id"] == cause and not decision.get("corrected_after"):
                    return _ms(entry_id)
    raise TimeoutError(f"bench: no decision for late event {cause} within {timeout}s")


def percentiles(values: Sequence[int | float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {"n": len(ordered), "p50": float(ordered[len(ordered) // 2]),
            "p99": float(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]),
            "max": float(ordered[-1])}  # fmt: skip
