"""`make bench`: rehabgate's gatekeeper and notifier against the raw Redis ceiling,
measured in one run on this machine. Writes bench/results/latest.json and
bench/results/latest.md and prints the table. Never part of `make test`.

Sizes (environment): BENCH_CLIENTS (throughput workload, default 10000),
BENCH_SECONDS (each latency run, default 60), BENCH_RATES (default "500,2000"),
BENCH_INGEST_EVENTS (events posted to the HTTPS ingest in batches of 100, default
100000) and BENCH_INGEST_SECONDS (its single-event run at 1,000/s, default 30).

`make bench CLUSTER=1` runs the same measurements on a local 3-master Redis
Cluster (tests/cluster_server.py) with REHABGATE_PARTITIONS=6 (BENCH_PARTITIONS),
writing bench/results/latest-cluster.json and .md instead.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

from bench import measure, profile
from rehabgate.services.common.redis_server import EmbeddedRedis, server_binary
from tests.cluster_server import EmbeddedCluster

RESULTS = Path(__file__).parent / "results"
GOALS = {
    "gatekeeper_ratio": (">=", 0.10),
    "two_process_speedup": (">=", 1.6),
    "p99_decision_ms_at_2000": ("<=", 25),
    "p99_message_ms_at_2000": ("<=", 50),
    "gatekeeper_rss_mb": ("<=", 150),
    "audit_bytes_per_session_event": ("<=", 2048),
    "ingest_events_per_s_batched": (">=", 10_000),
    "ingest_p99_ms_at_1000_rps": ("<=", 25),
}


def main() -> int:
    clients = int(os.environ.get("BENCH_CLIENTS", "10000"))
    seconds = float(os.environ.get("BENCH_SECONDS", "60"))
    rates = [int(r) for r in os.environ.get("BENCH_RATES", "500,2000").split(",")]
    started = time.perf_counter()
    cluster = os.environ.get("CLUSTER", "") not in ("", "0")
    if cluster:  # read by the services and by measure.connect()
        os.environ["REHABGATE_REDIS_CLUSTER"] = "true"
        os.environ["REHABGATE_PARTITIONS"] = os.environ.get("BENCH_PARTITIONS", "6")
    with EmbeddedCluster() if cluster else EmbeddedRedis(appendonly=False) as server:
        url = server.url
        print(f"bench: Redis {server_binary()} at {url}", flush=True)
        raw = measure.run_async(measure.raw_loop(url, 100_000))
        print(f"raw consume-and-ack: {raw:,.0f} events/s", flush=True)
        one = measure.gatekeeper_throughput(url, 1, clients, days=1)
        print(f"gatekeeper, 1 process: {one:,.0f} events/s", flush=True)
        two = measure.gatekeeper_throughput(url, 2, clients, days=1)
        print(f"gatekeeper, 2 processes: {two:,.0f} events/s", flush=True)
        runs = {}
        for rate in rates:
            runs[rate] = measure.latency(url, rate, seconds, gatekeepers=2)
            print(f"latency at {rate}/s: {runs[rate].summary()}", flush=True)
        spied = None  # issue 9: a missed goal comes with its profile
        if runs[max(rates)].summary()["message_p99_ms"] > GOALS["p99_message_ms_at_2000"][1]:
            spied = profile.profile_latency(url, max(rates), min(seconds, 20), gatekeepers=2)
        stored = measure.storage(url, clients=1000, days=10)
        print(f"storage: {stored}", flush=True)
        ingest_events = int(os.environ.get("BENCH_INGEST_EVENTS", "100000"))
        ingest_rate = measure.ingest_throughput(url, ingest_events, batch=100)
        print(f"ingest, batches of 100: {ingest_rate:,.0f} events/s", flush=True)
        ingest_seconds = float(os.environ.get("BENCH_INGEST_SECONDS", "30"))
        ingest_latency = measure.ingest_latency(url, 1000, ingest_seconds)
        print(f"ingest, single events at 1,000/s: {ingest_latency}", flush=True)
    top = runs[max(rates)]
    results = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": sys.version.split()[0], "redis_server": str(server_binary())},
        "versions": {p: version(p) for p in ("rehabgate", "faststream", "redis", "pydantic")},
        "raw_events_per_s": round(raw),
        "gatekeeper_events_per_s": round(one),
        "gatekeeper_ratio": round(one / raw, 3),
        "gatekeeper_events_per_s_2_processes": round(two),
        "two_process_speedup": round(two / one, 2),
        "latency": {str(rate): run.summary() for rate, run in runs.items()},
        "p99_decision_ms_at_2000": top.summary()["decision_p99_ms"],
        "p99_message_ms_at_2000": top.summary()["message_p99_ms"],
        "gatekeeper_rss_mb": round(top.rss_mb["gatekeeper"], 1),
        "notifier_rss_mb": round(top.rss_mb["notifier"], 1),
        "redis_bytes_per_client": round(stored["redis_bytes_per_client"]),
        "audit_bytes_per_session_event": round(stored["audit_bytes_per_session_event"]),
        "ingest_events_per_s_batched": round(ingest_rate),
        "ingest_p99_ms_at_1000_rps": ingest_latency["p99_ms"],
        "ingest_latency_at_1000_rps": ingest_latency,
        "seconds": round(time.perf_counter() - started),
        "sizes": {"clients": clients, "latency_seconds": seconds, "rates": rates,
                  "ingest_events": ingest_events, "ingest_seconds": ingest_seconds},
        "cluster": {"masters": 3, "partitions": int(os.environ["REHABGATE_PARTITIONS"])} if cluster else None,
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    name = "latest-cluster" if cluster else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = render(results)
    if one / raw < GOALS["gatekeeper_ratio"][1]:  # issue 9: a missed goal comes with its profile
        written = profile.profile_gatekeeper(min(clients, 3000)).relative_to(RESULTS.parents[1])
        table += f"\n\ngatekeeper_ratio missed: where the time goes is in {written}"
    if spied is not None:
        where = spied.relative_to(RESULTS.parents[1])
        table += f"\np99_message_ms_at_2000 missed: where the time goes is in {where}"
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)
    return 0


def render(results: dict[str, object]) -> str:
    rows = ["| measure | value | goal | met |", "|---|---|---|---|"]
    for key in ("raw_events_per_s", "gatekeeper_events_per_s", "gatekeeper_ratio",
                "gatekeeper_events_per_s_2_processes", "two_process_speedup",
                "p99_decision_ms_at_2000", "p99_message_ms_at_2000", "gatekeeper_rss_mb",
                "notifier_rss_mb", "redis_bytes_per_client", "audit_bytes_per_session_event",
                "ingest_events_per_s_batched", "ingest_p99_ms_at_1000_rps"):  # fmt: skip
        value = results[key]
        goal = GOALS.get(key)
        met = ""
        if goal is not None and isinstance(value, int | float):
            met = "yes" if (value >= goal[1] if goal[0] == ">=" else value <= goal[1]) else "NO"
        rows.append(
            f"| {key} | {value} | {goal[0] + ' ' + str(goal[1]) if goal else ''} | {met} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
