"""rehabgate on a local 3-master Redis Cluster (tests/cluster_server.py), with its
partitions spread over all three masters: the real gatekeeper and notifier
processes apply every event once, decide on every partition and message every
client once; a SIGKILL of both mid-run loses and duplicates nothing; and the
operator commands (health, audit verify --all, dlq, trim, erase) and the publisher
SDK's `wait_for_decision`/`fates` work there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster

from rehabgate.schemas.inbound import InboundEvent
from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.schemas.publisher import (
    AsyncPublisher,
    DeadLetterInfo,
    DecisionTimeout,
    Events,
    Fate,
    Publisher,
)
from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    INBOUND_DEAD_LETTER,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_stream,
    partition_of,
)
from rehabgate.services.cli.main import main as rehabgate
from rehabgate.services.common.keys import ClientKeys
from tests.cluster_server import EmbeddedCluster
from tests.events import enrolment, session, unique_client
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.cluster]

PARTITIONS = 6
CLUSTER_ENV = {"REHABGATE_REDIS_CLUSTER": "true", "REHABGATE_PARTITIONS": str(PARTITIONS)}


@pytest.fixture(scope="session")
def cluster_url() -> Iterator[str]:
    with EmbeddedCluster() as cluster:
        yield cluster.url


@pytest.fixture
def cluster(cluster_url: str) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(cluster_url)
    yield client
    client.close()


class Services:
    """Gatekeeper and notifier processes on the cluster, as in production."""

    def __init__(self, url: str, logs: Path) -> None:
        self.url, self.logs = url, logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, service: str, consumer: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, **CLUSTER_ENV, "REDIS_URL": self.url, "REHABGATE_CONSUMER": consumer,
               "REHABGATE_CLAIM_IDLE_MS": "500", "REHABGATE_MAX_DELIVERIES": "10",
               "REHABGATE_HTTP_PORT": "0", "REHABGATE_NOTIFIER_HTTP_PORT": "0"}  # fmt: skip
        with (self.logs / f"{consumer}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "rehabgate.services.cli.main", service],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def services(cluster_url: str, tmp_path: Path) -> Iterator[Services]:
    running = Services(cluster_url, tmp_path)
    yield running
    running.stop()


def spread_clients(prefix: str, per_partition: int) -> list[str]:
    """Fresh client ids, `per_partition` in each partition."""
    found: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    while any(len(ids) < per_partition for ids in found.values()):
        client = unique_client(prefix)
        if len(found[partition_of(client, PARTITIONS)]) < per_partition:
            found[partition_of(client, PARTITIONS)].append(client)
    return [c for ids in found.values() for c in ids]


def workload(
    prefix: str, per_partition: int, sessions: int
) -> tuple[list[str], list[dict[str, Any]]]:
    """Clients spread over the partitions; each one's enrolment, then a session a
    day, published round by round (a client's events stay in order)."""
    clients = spread_clients(prefix, per_partition)
    events = [enrolment(c) for c in clients]
    return clients, events + [session(c, d) for d in range(1, sessions + 1) for c in clients]


def publish(r: RedisCluster, events: list[dict[str, Any]]) -> None:
    pipe = r.pipeline()
    for event in events:
        pipe.xadd(INBOUND, {"event": json.dumps(event)})
    pipe.execute()


def group(r: RedisCluster, stream: str, name: str) -> dict[str, Any]:
    try:
        return next(g for g in r.xinfo_groups(stream) if g["name"].decode() == name)
    except (redis.ResponseError, StopIteration):  # no stream or group yet
        return {"lag": None, "pending": None, "entries-read": 0}


def acked(r: RedisCluster, stream: str, name: str) -> bool:
    """The group has read and acknowledged everything on the stream."""
    state = group(r, stream, name)
    return bool(state["lag"] == 0 and state["pending"] == 0)


def drained(r: RedisCluster) -> bool:
    """Every group of both services has read and acknowledged everything."""
    return acked(r, INBOUND, GATEKEEPER_GROUP) and all(
        acked(r, evaluated_stream(p), NOTIFIER_GROUP) for p in range(PARTITIONS)
    )


def documents(
    r: RedisCluster, stream_of: Callable[[int], str], field: bytes, clients: set[str]
) -> dict[int, list[dict[str, Any]]]:
    """Our clients' JSON documents (decisions, messages) on each partition's stream."""
    return {
        p: [d for _, f in r.xrange(stream_of(p))
            if (d := json.loads(f[field]))["client_id"] in clients]
        for p in range(PARTITIONS)
    }  # fmt: skip


def decisions_of(r: RedisCluster, clients: set[str]) -> dict[int, list[dict[str, Any]]]:
    return documents(r, evaluated_stream, b"event", clients)


def messages_of(r: RedisCluster, clients: set[str]) -> dict[int, list[dict[str, Any]]]:
    return documents(r, client_messages_stream, b"message", clients)


def assert_exactly_once(r: RedisCluster, clients: list[str], events_per_client: int) -> None:
    """Each event applied once; one decision per event, on its client's partition;
    one client message per decision that calls for one; no dead letters."""
    ours = set(clients)
    for client in clients:
        keys = ClientKeys.of(client, PARTITIONS)
        assert r.scard(keys.processed) == events_per_client, client
        assert r.xlen(keys.audit) == events_per_client, client
    decisions = decisions_of(r, ours)
    for p, found in decisions.items():
        assert found, f"no decision on partition {p}"
        assert {partition_of(d["client_id"], PARTITIONS) for d in found} == {p}
    every = [d for found in decisions.values() for d in found]
    assert len(every) == len(clients) * events_per_client
    assert max(Counter(d["decision_id"] for d in every).values()) == 1
    assert max(Counter(d["cause_event_id"] for d in every).values()) == 1
    wanted = {d["decision_id"] for d in every if d["outcome"] != "held"}
    assert wanted, "the workload should call for messages"
    messages = messages_of(r, ours)
    for p, found in messages.items():
        assert {partition_of(m["client_id"], PARTITIONS) for m in found} <= {p}
    covered = Counter(i for found in messages.values() for m in found for i in m["decision_ids"])
    assert set(covered) == wanted
    assert max(covered.values()) == 1
    letters = [f[b"raw"] for _, f in r.xrange(INBOUND_DEAD_LETTER)]
    assert not [raw for raw in letters if any(c.encode() in raw for c in clients)]


def test_partitions_spread_over_all_three_masters(cluster_url: str, cluster: RedisCluster) -> None:
    nodes = {cluster.get_node_from_key(evaluated_stream(p)).name for p in range(PARTITIONS)}
    assert len(cluster.get_primaries()) == 3
    assert len(nodes) == 3


def test_events_for_many_clients_are_applied_decided_and_messaged_exactly_once(
    cluster: RedisCluster, services: Services
) -> None:
    clients, events = workload("cl-e2e", per_partition=10, sessions=5)
    for n in (1, 2):  # two of each share the partitions through consumer groups
        services.start("gatekeeper", f"cluster-gk-{n}-{clients[0]}")
        services.start("notifier", f"cluster-nt-{n}-{clients[0]}")
    publish(cluster, events)

    wait_for(lambda: drained(cluster) and _messaged(cluster, clients), 120, what="the drain")

    assert_exactly_once(cluster, clients, events_per_client=6)


@pytest.mark.faults
def test_sigkill_of_both_services_mid_run_loses_and_duplicates_nothing(
    cluster: RedisCluster, services: Services
) -> None:
    clients, events = workload("cl-kill", per_partition=12, sessions=40)
    before = int(group(cluster, INBOUND, GATEKEEPER_GROUP)["entries-read"] or 0)
    first = [services.start("gatekeeper", f"kill-gk-1-{clients[0]}"),
             services.start("notifier", f"kill-nt-1-{clients[0]}")]  # fmt: skip
    publish(cluster, events)

    def read() -> int:
        return int(group(cluster, INBOUND, GATEKEEPER_GROUP)["entries-read"] or 0) - before

    wait_for(lambda: read() >= 300, 120, what="the gatekeeper to get under way")
    for process in first:
        process.send_signal(signal.SIGKILL)
    assert read() < len(events)  # it really was mid-run
    for process in first:
        process.wait(timeout=60)
    services.start("gatekeeper", f"kill-gk-2-{clients[0]}")
    services.start("notifier", f"kill-nt-2-{clients[0]}")

    wait_for(lambda: drained(cluster) and _messaged(cluster, clients), 240, what="the drain")

    assert_exactly_once(cluster, clients, events_per_client=41)


def _messaged(r: RedisCluster, clients: list[str]) -> bool:
    """Every decision that calls for a message has one (the notifier's outbox sends
    some after the group has acknowledged the decision)."""
    ours = set(clients)
    wanted = {d["decision_id"] for found in decisions_of(r, ours).values() for d in found
              if d["outcome"] != "held"}  # fmt: skip
    covered = {i for found in messages_of(r, ours).values() for m in found
               for i in m["decision_ids"]}  # fmt: skip
    return bool(wanted) and wanted <= covered


def test_operator_commands_work_on_the_cluster(
    cluster_url: str,
    cluster: RedisCluster,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", cluster_url)
    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)
    consumer = f"ops-gk-{unique_client()}"
    services.start("gatekeeper", consumer)
    clients = spread_clients("cl-ops", per_partition=1)
    publish(cluster, [enrolment(c) for c in clients])
    cluster.xadd(INBOUND, {"event": b'{"event_type": "session.logged", "client_id": "' +
                           clients[0].encode() + b'"'})  # fmt: skip
    wait_for(lambda: acked(cluster, INBOUND, GATEKEEPER_GROUP), what="the drain")

    monkeypatch.setenv("REHABGATE_CONSUMER", consumer)
    assert rehabgate(["health", "gatekeeper"]) == 0
    assert rehabgate(["audit", "verify", "--all"]) == 0
    verified = capsys.readouterr().out
    assert all(f"OK      {c}:" in verified for c in clients)

    def letters() -> list[bytes]:
        return [
            i for i, f in cluster.xrange(INBOUND_DEAD_LETTER) if clients[0].encode() in f[b"raw"]
        ]

    first = letters()
    assert len(first) == 1
    assert rehabgate(["dlq", "replay", first[0].decode()]) == 0
    wait_for(lambda: acked(cluster, INBOUND, GATEKEEPER_GROUP), what="the replay")
    again = letters()
    assert len(again) == 1  # re-driven, and dead-lettered afresh
    assert again != first
    assert rehabgate(["trim"]) == 0

    assert rehabgate(["erase", clients[1]]) == 0
    assert cluster.exists(ClientKeys.of(clients[1], PARTITIONS).audit) == 0
    assert rehabgate(["erase", "--verify"]) == 0
    assert f"erased client {clients[1]}" in capsys.readouterr().out


def stranger_checkin() -> InboundEvent:
    """Never enrolled: the gatekeeper dead-letters its events as from an unknown client."""
    return Events("clinic-a").checkin_logged(
        unique_client("cl-stranger"), morning_pain=1, morning_stiffness=1, swelling=False
    )


def assert_fates(enrolments: list[dict[str, Any]], decided: list[Fate], letter: Fate) -> None:
    """Each enrolment's own decision, in order; the stranger's check-in back as its
    dead letter."""
    assert [(str(d.cause_event_id), d.client_id, d.outcome) for d in decided
            if isinstance(d, ProgressionEvaluated)] == [
        (e["event_id"], e["client_id"], "unlocked") for e in enrolments]  # fmt: skip
    assert isinstance(letter, DeadLetterInfo)
    assert letter.reason.startswith("unknown client")


def test_the_publisher_sdk_follows_each_event_to_its_fate_on_the_cluster(
    cluster_url: str, services: Services
) -> None:
    services.start("gatekeeper", f"sdk-gk-{unique_client()}")
    enrolments = [enrolment(c) for c in spread_clients("cl-sdk", per_partition=1)]
    stranger = stranger_checkin()
    with Publisher(cluster_url, cluster=True, partitions=PARTITIONS) as publisher:
        sent = [publisher.publish_raw(json.dumps(e)) for e in enrolments]
        refused = publisher.publish(stranger)
        decided = [publisher.wait_for_decision(e["event_id"], timeout=60) for e in enrolments]
        letter = publisher.wait_for_decision(stranger, timeout=60)
        fates = dict(publisher.fates([*sent, refused], timeout=60))
    # Not published here: it looks back skew_ms from the cluster's TIME (a busy
    # machine may take more than the default 5 s to get here).
    with Publisher(cluster_url, cluster=True, partitions=PARTITIONS, skew_ms=300_000) as elsewhere:
        assert elsewhere.wait_for_decision(stranger.event_id, timeout=60) == letter
        with pytest.raises(DecisionTimeout):
            elsewhere.wait_for_decision(uuid4(), timeout=0.5)

    assert_fates(enrolments, decided, letter)
    assert letter.source_id == refused
    assert fates == {**dict(zip(sent, decided, strict=True)), refused: letter}


async def test_the_async_publisher_waits_on_a_cluster_client_until_the_gatekeeper_decides(
    cluster_url: str, services: Services
) -> None:
    enrolments = [enrolment(c) for c in spread_clients("cl-sdk-async", per_partition=1)]
    stranger = stranger_checkin()
    client = aredis.RedisCluster.from_url(cluster_url)
    async with AsyncPublisher(client, partitions=PARTITIONS) as publisher:
        sent = [await publisher.publish_raw(json.dumps(e)) for e in enrolments]
        refused = await publisher.publish(stranger)
        services.start("gatekeeper", f"sdk-gk-{unique_client()}")  # it decides while we wait
        decided = [await publisher.wait_for_decision(e["event_id"], timeout=60)
                   for e in enrolments]  # fmt: skip
        letter = await publisher.wait_for_decision(stranger, timeout=60)
        fates = [f async for f in publisher.fates([*sent, refused], timeout=60)]
    await client.aclose()

    assert_fates(enrolments, decided, letter)
    assert dict(fates) == {**dict(zip(sent, decided, strict=True)), refused: letter}
