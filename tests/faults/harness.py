"""The fault-injection harness: real Redis, real service processes, a seeded clinic
workload, a drain, and invariants checked against a pure reference model.

Why each piece is shaped the way it is:
- Services run as `python -m rehabgate.services.cli.main gatekeeper|notifier`
  child processes, exactly as in production, so SIGKILL / SIGSTOP hit real
  processes and nothing is mocked.
- The workload is published in *rounds*: round i holds the i-th event of every
  client, in one fixed client order, and round i+1 is published only once round
  i has been applied (the gatekeeper group read and acknowledged all of it). A
  client's events are therefore a whole round apart in the stream and in time,
  like a real clinic where a client's next event comes a day later. Faults still
  hit batches in flight; only the per-client order is protected, because the
  reference model replays each client's events in publish order.
- The checker reads everything back from Redis after draining and replays each
  client's valid events through the pure domain (`enroll` / `decide`): the state
  and the stage transitions the system shows must be the ones the model computes.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import itertools
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rehabgate.schemas.inbound import ClientEnrolled, parse_inbound
from rehabgate.schemas.streams import (
    GATEKEEPER_GROUP,
    INBOUND,
    INBOUND_DEAD_LETTER,
    NOTIFIER_GROUP,
    client_messages_stream,
    evaluated_stream,
    physio_alerts_stream,
    receipts_stream,
)
from rehabgate.services.common.heartbeat import heartbeat_key
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.common.redis_server import EmbeddedRedis
from rehabgate.services.gatekeeper.domain import Protocol, Rejected, decide, enroll
from rehabgate.services.gatekeeper.domain.decide import DECISION_NAMESPACE, replay
from rehabgate.services.gatekeeper.protocol_files import load_protocols

from .proxy import FaultProxy

PROTOCOL = "achilles-tendinopathy@1"
CLINIC = "clinic-a"
# In the past on any plausible clock: the notifier never waits for a message whose
# coalescing window (in event time) lies before now.
START = datetime(2024, 3, 4, tzinfo=UTC)
REPS = "single_leg_heel_raise_reps"
EVENTS_PER_CLIENT = 39  # enrolment + about 19 days of session and check-in (+ approvals)
CLAIM_IDLE_MS = 1000  # small, so the claimers take over a dead consumer's work fast
UNLOCKS = ("unlocked", "completed")
TRANSITIONS = ("unlocked", "regressed", "completed")
EVALUATED = evaluated_stream(0)
MESSAGES = client_messages_stream(0)
RECEIPTS = receipts_stream(0)
ALERTS = physio_alerts_stream(0)
GROUPS = ((INBOUND, GATEKEEPER_GROUP), (EVALUATED, NOTIFIER_GROUP))

#: Summary keys that count invariant violations: each must be 0 in a passing run.
VIOLATIONS = (
    "lost",
    "duplicate_unlocks",
    "duplicate_messages",
    "pending_left",
    "divergent_decisions",
    "duplicate_decisions",
    "missing_messages",
    "unexpected_dead_letters",
    "hostile_not_dead_lettered",
    "dead_letter_repeats",
    "hostile_state_writes",
    "stalled_rounds",
    "not_drained",
    "service_exits",
    "late_reevaluations_of_in_order_clients",
    "decisions_differing_from_model",
    "multi_stage_decisions",
    "transitions_differing_from_model",
    "missing_physio_alerts",
    "contradictory_messages",
)


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Outgoing:
    """One inbound publish: the entry's fields and what the checker expects of it.
    `hostile` names the kind of bad input; valid events have None."""

    fields: dict[str, bytes]
    event_id: str | None
    client_id: str | None
    hostile: str | None = None


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _at(day: int, hour: int) -> str:
    return (START + timedelta(days=day, hours=hour)).isoformat()


def _event(
    rng: random.Random, client_id: str, event_type: str, at: str, **body: Any
) -> dict[str, Any]:
    """An event dict as tests/events.py writes them (the integrator's view)."""
    return {
        "event_id": _uuid(rng),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": at,
        "clinic_id": CLINIC,
        "client_id": client_id,
        **body,
    }


def _valid(event: dict[str, Any]) -> Outgoing:
    return Outgoing({"event": json.dumps(event).encode()}, event["event_id"], event["client_id"])


def client_course(rng: random.Random, client_id: str) -> list[Outgoing]:
    """One client's events in time order: enrolment, then daily sessions at 18:00 with
    plausible pain (mostly 1-4, sometimes 5-7), next-morning check-ins at 07:00 with
    a slowly drifting morning pain and occasional swelling, and a physio's approval at
    12:00 after anything that flags the client. One client in seven has a two-day flare
    late in the course, which steps back from stage 2 when it has been reached."""
    days = rng.randint(16, 22)
    flare = rng.random() < 1 / 7
    events = [
        _event(rng, client_id, "client.enrolled", _at(0, 8),
               protocol=PROTOCOL, start_date=START.date().isoformat())
    ]  # fmt: skip
    morning = rng.randint(1, 3)
    for day in range(days):
        pain = rng.choices((1, 2, 3, 4, 5, 6, 7), weights=(20, 30, 25, 15, 5, 3, 2))[0]
        if flare and day in (days - 3, days - 2):
            pain = 6
        metrics = {REPS: 8 + day // 3} if day % 3 == 0 else {}
        events.append(
            _event(rng, client_id, "session.logged", _at(day, 18),
                   session_id=f"s{day}-{_uuid(rng)[:8]}", pain_during=pain, completed=True,
                   exercises=[{"exercise_id": "one-leg-heel-raise", "sets": [{"reps": 10}] * 3}],
                   metrics=metrics)
        )  # fmt: skip
        morning = min(5, max(0, morning + rng.choice((-1, 0, 0, 0, 1))))
        spike = rng.random() < 0.01
        swelling = rng.random() < 0.02
        events.append(
            _event(rng, client_id, "checkin.logged", _at(day + 1, 7),
                   morning_pain=7 if spike else morning, morning_stiffness=morning,
                   swelling=swelling)
        )  # fmt: skip
        if pain == 7 or spike or swelling:
            events.append(
                _event(rng, client_id, "clinician.action", _at(day + 1, 12), action="approve",
                       reason="Reviewed in clinic: resume loading", clinician_id="physio-1")
            )  # fmt: skip
    return [_valid(e) for e in events]


def workload(seed: int, events: int) -> list[list[Outgoing]]:
    """About `events` valid events from `events / 39` clients, as publishing rounds:
    round i holds the i-th event of every client that still has one, clients always
    in the same order, so one client's consecutive events are a whole round apart."""
    rng = random.Random(seed)
    clients = max(4, round(events / EVENTS_PER_CLIENT))
    courses = [client_course(rng, f"fc{seed}-{n:05d}") for n in range(clients)]
    rounds = max(len(c) for c in courses)
    return [[c[i] for c in courses if i < len(c)] for i in range(rounds)]


def continuous_workload(seed: int, events: int, chunk: int = 50) -> list[list[Outgoing]]:
    """About `events` valid events from `events / 39` clients as one continuous
    stream, cut into chunks of `chunk` only to measure progress: the clients'
    courses interleaved at random, each client's events in its own order, so one
    client's consecutive events can be anywhere from adjacent to far apart."""
    rng = random.Random(seed)
    clients = max(4, round(events / EVENTS_PER_CLIENT))
    courses = [client_course(rng, f"fc{seed}-{n:05d}") for n in range(clients)]
    slots = [n for n, course in enumerate(courses) for _ in course]
    rng.shuffle(slots)
    position = [0] * len(courses)
    flat = []
    for n in slots:
        flat.append(courses[n][position[n]])
        position[n] += 1
    return [flat[i : i + chunk] for i in range(0, len(flat), chunk)]


#: Phone-app events (the client's own device): what an offline phone holds back.
PHONE_EVENTS = ("session.logged", "checkin.logged")


def _phone_day(event: dict[str, Any]) -> int | None:
    """The course day a phone event belongs to (a check-in is the next morning of its
    day's session), or None for events the clinic sends (enrolment, approvals)."""
    if event["event_type"] not in PHONE_EVENTS:
        return None
    days = (datetime.fromisoformat(event["occurred_at"]) - START).days
    return days - (event["event_type"] == "checkin.logged")


def offline_units(
    rng: random.Random, course: Sequence[Outgoing]
) -> tuple[list[list[Outgoing]], list[tuple[int, int]], list[int]]:
    """One client's course as publish units for a phone that goes offline: one or two
    windows of 1-7 course days whose sessions and check-ins the phone holds back and
    then delivers in one burst, shuffled, just before its first event after the
    window (or at the end). The clinic's events (enrolment, approvals) are published
    when they happen, so they can reach the gatekeeper before the days they follow.
    Returns the units (a unit is one event or one burst), the windows (first day,
    day after the last) and the bursts' sizes."""
    days = [d for o in course if (d := _phone_day(json.loads(o.fields["event"]))) is not None]
    last = max(days)
    windows: list[tuple[int, int]] = []
    for _ in range(1 + (rng.random() < 0.3)):
        first = rng.randint(0, last)
        window = (first, min(last + 1, first + rng.randint(1, 7)))
        if all(window[1] <= a or b <= window[0] for a, b in windows):
            windows.append(window)
    held: dict[int, list[Outgoing]] = {n: [] for n in range(len(windows))}
    units: list[list[Outgoing]] = []
    bursts: list[int] = []

    def flush(before_day: int | None) -> None:
        for n, (_, end) in enumerate(windows):
            if held[n] and (before_day is None or end <= before_day):
                burst, held[n] = held[n], []
                rng.shuffle(burst)
                units.append(burst)
                bursts.append(len(burst))

    for item in course:
        day = _phone_day(json.loads(item.fields["event"]))
        window = next((n for n, (a, b) in enumerate(windows) if day is not None and a <= day < b),
                      None)  # fmt: skip
        if window is not None:
            held[window].append(item)
            continue
        if day is not None:
            flush(day)
        units.append([item])
    flush(None)
    return units, windows, bursts


def offline_workload(
    seed: int, events: int, share: float, chunk: int = 50
) -> tuple[list[list[Outgoing]], dict[str, Any]]:
    """Like continuous_workload, but `share` of the clients (at least one) have a phone
    that goes offline (offline_units): their held-back days arrive in one burst,
    shuffled, late in event time. The other clients' events are published in order.
    Returns the chunks and a description of the offline plan for the report."""
    rng = random.Random(seed)
    clients = max(4, round(events / EVENTS_PER_CLIENT))
    courses = [client_course(rng, f"fc{seed}-{n:05d}") for n in range(clients)]
    offline = set(rng.sample(range(clients), max(1, math.ceil(clients * share))))
    plans: list[list[list[Outgoing]]] = []
    windows: list[tuple[int, int]] = []
    bursts: list[int] = []
    for n, course in enumerate(courses):
        if n in offline:
            units, client_windows, sizes = offline_units(rng, course)
            windows.extend(client_windows)
            bursts.extend(sizes)
        else:
            units = [[item] for item in course]
        plans.append(units)
    slots = [n for n, units in enumerate(plans) for _ in units]
    rng.shuffle(slots)
    position = [0] * len(plans)
    flat = []
    for n in slots:
        flat.extend(plans[n][position[n]])
        position[n] += 1
    plan = {
        "clients": clients,
        "offline_clients": len(offline),
        "offline_windows": len(windows),
        "offline_days": dict(sorted(Counter(b - a for a, b in windows).items())),
        "bursts": len(bursts),
        "burst_events": sum(bursts),
    }
    return [flat[i : i + chunk] for i in range(0, len(flat), chunk)], plan


HOSTILE_KINDS = (
    "malformed_json", "not_utf8", "missing_event_field", "pain_out_of_range", "unknown_field",
    "email_as_client_id", "unknown_client", "other_clinic", "re_enrolment",
    "megabyte_garbage", "megabyte_json",
)  # fmt: skip


def hostile_events(rng: random.Random, clients: Sequence[str], count: int) -> list[Outgoing]:
    """Malformed or hostile entries, cycling through every kind: each must be
    dead-lettered and must write no state. Ones about existing clients are only
    mixed into rounds after the enrolment round."""
    megabyte = 1024 * 1024
    out = []
    for n in range(count):
        client = rng.choice(clients)
        session = _event(rng, client, "session.logged", _at(3, 18), session_id=f"h{n}",
                         pain_during=3, completed=True)  # fmt: skip
        kind = HOSTILE_KINDS[n % len(HOSTILE_KINDS)]
        event: dict[str, Any] | None = None
        raw: bytes | None = None
        if kind == "malformed_json":
            raw = b'{"event_type": "session.logged", oops'
        elif kind == "not_utf8":
            raw = b"\xff\xfe\xfa" + rng.randbytes(32)
        elif kind == "missing_event_field":
            out.append(Outgoing({"evt": json.dumps(session).encode()}, None, None, kind))
            continue
        elif kind == "pain_out_of_range":
            event = {**session, "pain_during": 11}
        elif kind == "unknown_field":
            event = {**session, "patient_name": "Jane Example"}
        elif kind == "email_as_client_id":
            event = {**session, "client_id": "jane@example.org"}
        elif kind == "unknown_client":
            event = {**session, "client_id": f"ghost-{n:05d}"}
        elif kind == "other_clinic":
            event = {**session, "clinic_id": "clinic-b"}
        elif kind == "re_enrolment":
            event = _event(rng, client, "client.enrolled", _at(2, 8), protocol=PROTOCOL,
                           start_date=START.date().isoformat())  # fmt: skip
        elif kind == "megabyte_garbage":
            raw = b"A" * megabyte
        elif kind == "megabyte_json":
            event = _event(rng, client, "clinician.action", _at(3, 12), action="approve",
                           reason="x" * megabyte, clinician_id="physio-1")  # fmt: skip
        if event is not None:
            out.append(Outgoing({"event": json.dumps(event).encode()},
                                event["event_id"], event["client_id"], kind))  # fmt: skip
        else:
            assert raw is not None
            out.append(Outgoing({"event": raw}, None, None, kind))
    return out


def mix_in(rng: random.Random, rounds: list[list[Outgoing]], extra: Sequence[Outgoing]) -> None:
    """Insert `extra` at random places of rounds 1.. (after every client's enrolment)."""
    for item in extra:
        target = rounds[rng.randrange(1, len(rounds))]
        target.insert(rng.randrange(len(target) + 1), item)


# --------------------------------------------------------------------------- processes


@dataclass
class Service:
    kind: str  # "gatekeeper" | "notifier"
    consumer: str
    process: subprocess.Popen[bytes]
    started_ms: int
    stopped_on_purpose: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Cluster:
    """Redis with its own data dir, an optional fault proxy in front of it, and the
    service processes. `with Cluster(...)` guarantees that every child process and
    the server are stopped, even when a check fails.

    A process that exits on its own (not killed by the harness) is restarted under
    the same consumer name after a second, as compose's `restart: unless-stopped`
    would; such exits are counted in `exits`."""

    def __init__(
        self,
        workdir: Path,
        claim_idle_ms: int | None = CLAIM_IDLE_MS,
        max_deliveries: int = 5,
        appendfsync: str = "everysec",
        proxy: bool = False,
    ) -> None:
        """`claim_idle_ms`: None leaves the services' default (REHABGATE_CLAIM_IDLE_MS unset)."""
        self.workdir = workdir
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.appendfsync = appendfsync
        self.use_proxy = proxy
        self.server: EmbeddedRedis | None = None
        self.proxy: FaultProxy | None = None
        self.services: list[Service] = []
        self.exits: list[str] = []
        self._lock = threading.RLock()
        self._supervising = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._port = 0

    # -- redis

    def _new_server(self) -> EmbeddedRedis:
        return EmbeddedRedis(
            data_dir=self.workdir / "redis",
            appendonly=True,
            port=self._port or None,
            appendfsync=self.appendfsync,
        )

    @property
    def redis_url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def service_url(self) -> str:
        """What services connect to: through the proxy when there is one."""
        return self.proxy.url if self.proxy is not None else self.redis_url

    def client(self, retries: bool = True) -> redis.Redis:
        """A direct connection for the harness (never through the proxy). Without
        `retries`, a lost reply raises instead of being re-sent inside redis-py."""
        return redis.Redis.from_url(
            self.redis_url,
            socket_timeout=10,
            socket_connect_timeout=2,
            **({} if retries else {"retry": Retry(NoBackoff(), 0)}),
        )

    def kill_redis(self) -> None:
        """SIGKILL redis-server: no shutdown, no final fsync; what is in the AOF survives."""
        with contextlib.closing(self.client()) as r:
            pid = int(r.info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)
        assert self.server is not None
        self.server.stop()  # reaps the dead process; our data dir is kept

    def restart_redis(self) -> None:
        """Start the server again on the same port from the same AOF."""
        self.server = self._new_server().start(timeout=30)

    # -- services

    def start(self, kind: str, consumer: str) -> Service:
        env = {
            **os.environ,
            "REDIS_URL": self.service_url,
            "REHABGATE_CONSUMER": consumer,
            "REHABGATE_MAX_DELIVERIES": str(self.max_deliveries),
            "REHABGATE_LOG_JSON": "true",
            "REHABGATE_HTTP_PORT": "0",  # any free port: several gatekeepers, one host
        }
        if self.claim_idle_ms is not None:
            env["REHABGATE_CLAIM_IDLE_MS"] = str(self.claim_idle_ms)
        else:
            env.pop("REHABGATE_CLAIM_IDLE_MS", None)
        log = (self.workdir / f"{kind}-{consumer}.log").open("ab")
        with log:
            process = subprocess.Popen(
                [sys.executable, "-m", "rehabgate.services.cli.main", kind],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        service = Service(kind, consumer, process, int(time.time() * 1000))
        with self._lock:
            self.services.append(service)
        return service

    def wait_ready(self, services: Sequence[Service], timeout: float = 60.0) -> None:
        """Until each service wrote a heartbeat after it started (all subscribers run)."""
        deadline = time.monotonic() + timeout
        with contextlib.closing(self.client()) as r:
            for service in services:
                while True:
                    with contextlib.suppress(redis.RedisError):
                        beat = r.hget(heartbeat_key(service.kind), service.consumer)
                        if beat is not None and int(beat) >= service.started_ms:
                            break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{service.kind} {service.consumer} not consuming")
                    time.sleep(0.05)

    def live(self, kind: str) -> list[Service]:
        with self._lock:
            return [s for s in self.services if s.kind == kind and s.alive]

    def kill(self, service: Service) -> None:
        with self._lock:
            service.stopped_on_purpose = True
            service.process.send_signal(signal.SIGKILL)
            service.process.wait(timeout=10)

    def pause(self, service: Service) -> None:
        service.process.send_signal(signal.SIGSTOP)

    def resume(self, service: Service) -> None:
        service.process.send_signal(signal.SIGCONT)

    def _supervise(self) -> None:
        while not self._supervising.wait(0.5):
            with self._lock:
                crashed = [s for s in self.services if not s.alive and not s.stopped_on_purpose]
                for service in crashed:
                    service.stopped_on_purpose = True
                    self.exits.append(
                        f"{service.kind}:{service.consumer}:rc={service.process.returncode}"
                    )
            for service in crashed:
                time.sleep(1.0)
                if not self._supervising.is_set():
                    self.start(service.kind, service.consumer)

    def stop_services(self) -> None:
        """SIGCONT (a paused process cannot exit), SIGTERM, then SIGKILL after 15 s."""
        self._supervising.set()
        with self._lock:
            running = [s for s in self.services if s.alive]
            for service in running:
                service.stopped_on_purpose = True
                with contextlib.suppress(ProcessLookupError):
                    service.process.send_signal(signal.SIGCONT)
                    service.process.terminate()
        for service in running:
            try:
                service.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=10)

    def __enter__(self) -> Cluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.server = self._new_server().start(timeout=30)
            self._port = self.server.port
            if self.use_proxy:
                self.proxy = FaultProxy(self._port).start()
            self._supervisor.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_services()
        finally:
            if self.proxy is not None:
                self.proxy.stop()
            if self.server is not None:
                self.server.stop()


# --------------------------------------------------------------------------- publishing


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def group_done(r: redis.Redis, stream: str, group: str) -> bool:
    """The group has read everything in the stream and acknowledged all of it."""
    try:
        last = r.xinfo_stream(stream)["last-generated-id"]
        groups = {g["name"].decode(): g for g in r.xinfo_groups(stream)}
    except redis.RedisError:
        return False
    info = groups.get(group)
    if info is None:
        return False
    delivered = info["last-delivered-id"]
    return _id_tuple(delivered) >= _id_tuple(last) and int(info["pending"]) == 0


def round_done(r: redis.Redis, first: str, last: str) -> bool:
    """The gatekeeper group has read up to `last` and acknowledged every entry from
    `first` to `last` (a stuck entry of an earlier round does not hold this one up)."""
    try:
        groups = {g["name"].decode(): g for g in r.xinfo_groups(INBOUND)}
        info = groups.get(GATEKEEPER_GROUP)
        if info is None or _id_tuple(info["last-delivered-id"]) < _id_tuple(last):
            return False
        return not r.xpending_range(INBOUND, GATEKEEPER_GROUP, min=first, max=last, count=1)
    except redis.RedisError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Driver(threading.Thread):
    """Publishes the rounds from a thread while the scenario injects faults.

    A publish that gets no reply (Redis down, connection lost) is re-sent with the
    same event_id until it is acknowledged: the clinic-side contract the README
    states (re-sending an event is safe). Every acknowledged entry id is kept."""

    def __init__(
        self,
        cluster: Cluster,
        rounds: list[list[Outgoing]],
        round_timeout: float,
        rate: float | None = None,
        ordered: bool = True,
    ) -> None:
        """`rate`: events per second, so the run lasts long enough for its faults and
        the services are busy (not idle between rounds) when a fault lands.
        `ordered=False` does not wait for a round to be applied before the next one,
        so a redelivered event can reach the gatekeeper after the same client's later
        events (the late-event path of the domain)."""
        super().__init__(daemon=True)
        self.cluster = cluster
        self.rounds = rounds
        self.round_timeout = round_timeout
        self.rate = rate
        self.ordered = ordered
        self.acked: list[tuple[Outgoing, str]] = []
        self.rounds_done = 0
        self.resends = 0
        self.stalled_rounds = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()  # set when the scenario failed: stop publishing
        self.mid_round = threading.Event()  # set while more chunks of a round are to come

    @property
    def progress(self) -> float:
        return self.rounds_done / len(self.rounds)

    def run(self) -> None:
        try:
            with contextlib.closing(self.cluster.client(retries=False)) as r:
                step = max(1, int(self.rate / 10)) if self.rate else 200  # a chunk per 0.1 s
                for batch in self.rounds:
                    first = len(self.acked)
                    chunks = [batch[i : i + step] for i in range(0, len(batch), step)]
                    for n, chunk in enumerate(chunks):
                        if self.stop.is_set():
                            return
                        if n + 1 < len(chunks):
                            self.mid_round.set()
                        else:
                            self.mid_round.clear()
                        began = time.monotonic()
                        self._publish(r, chunk)
                        if self.rate:  # never faster than the rate, even after a wait
                            time.sleep(max(0.0, began + len(chunk) / self.rate - time.monotonic()))
                    if self.ordered:
                        self._wait_applied(r, self.acked[first][1], self.acked[-1][1])
                    self.rounds_done += 1
        except BaseException as exc:
            self.error = exc

    def _wait_applied(self, r: redis.Redis, first: str, last: str) -> None:
        # Once the run is known to be broken, stop waiting the full time every round.
        timeout = 1.0 if self.stalled_rounds else self.round_timeout
        if not wait_until(lambda: round_done(r, first, last), timeout):
            self.stalled_rounds += 1

    def _publish(self, r: redis.Redis, chunk: Sequence[Outgoing]) -> None:
        """XADD the chunk in one round trip; without a reply, send it all again."""
        deadline = time.monotonic() + 120
        while True:
            pipe = r.pipeline(transaction=False)
            for item in chunk:
                pipe.xadd(INBOUND, item.fields)  # type: ignore[arg-type]
            try:
                ids = pipe.execute()
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() > deadline:
                    raise
                self.resends += 1
                time.sleep(0.2)
                continue
            for item, entry_id in zip(chunk, ids, strict=True):
                self.acked.append((item, entry_id.decode()))
            return


# --------------------------------------------------------------------------- a run


@dataclass
class Run:
    """What a scenario's fault function gets: the cluster, the driver, a seeded rng,
    and a counter of the faults it injected."""

    cluster: Cluster
    driver: Driver
    rng: random.Random
    faults: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def client(self) -> redis.Redis:
        """One direct connection for the fault function's polling (closed by the run)."""
        return self.cluster.client()

    def points(self, count: int, low: float = 0.05, high: float = 0.85) -> list[float]:
        """`count` random progress fractions at which to inject faults, in order: one
        in each of `count` equal slices, so faults never bunch up at the end."""
        width = (high - low) / max(count, 1)
        return [low + width * (i + self.rng.uniform(0.1, 0.9)) for i in range(count)]

    def wait_progress(self, fraction: float) -> bool:
        """Until the workload reached `fraction`; False when it ended first."""
        while self.driver.is_alive():
            if self.driver.progress >= fraction:
                return True
            time.sleep(0.02)
        return False


def run_scenario(
    name: str,
    workdir: Path,
    seed: int,
    events: int,
    faults: Callable[[Run], None],
    *,
    gatekeepers: int = 2,
    hostile_rate: float = 0.0,
    appendfsync: str = "everysec",
    proxy: bool = False,
    claim_idle_ms: int | None = CLAIM_IDLE_MS,
    rate: float | None = None,
    ordered: bool = True,
    continuous: bool = False,
    offline: float = 0.0,
    round_timeout: float = 30.0,
    drain_timeout: float = 90.0,
    stuck_after: float = 20.0,
) -> dict[str, Any]:
    """Start a fresh Redis and the services, drive the workload while `faults` runs in
    this thread, drain, check, and return the summary (one JSON-able dict).
    `continuous`: publish one continuous, randomly interleaved stream of in-order
    client courses without ever waiting for the gatekeepers (not rounds).
    `offline`: that share of the clients deliver days of events late, in one shuffled
    burst each (offline_workload; implies `continuous`)."""
    began = time.monotonic()
    rng = random.Random(seed)
    offline_plan: dict[str, Any] = {}
    if offline:
        rounds, offline_plan = offline_workload(seed, events, offline)
        continuous = True
    else:
        rounds = continuous_workload(seed, events) if continuous else workload(seed, events)
    if continuous:
        ordered = False  # never wait for a chunk to be applied
    hostile: list[Outgoing] = []
    if hostile_rate:
        clients = [o.client_id for o in rounds[0] if o.client_id]
        hostile = hostile_events(rng, clients, max(11, round(events * hostile_rate)))
        mix_in(rng, rounds, hostile)
    with Cluster(
        workdir, claim_idle_ms=claim_idle_ms, appendfsync=appendfsync, proxy=proxy
    ) as cluster:
        started = [cluster.start("gatekeeper", f"gk-{n}") for n in range(1, gatekeepers + 1)]
        started.append(cluster.start("notifier", "nt-1"))
        cluster.wait_ready(started)
        driver = Driver(cluster, rounds, round_timeout, rate, ordered)
        run = Run(cluster, driver, rng)
        if hostile:
            run.faults["hostile_input"] = len(hostile)
        driver.start()
        try:
            faults(run)
        except BaseException:
            driver.stop.set()
            raise
        finally:
            driver.join(timeout=round_timeout * len(rounds) + 60)
            if "client" in run.__dict__:
                run.client.close()
        if driver.error is not None:
            raise driver.error
        published = time.monotonic()
        drained = drain(cluster, drain_timeout, stuck_after)
        run.notes["workload_seconds"] = round(published - began, 1)
        run.notes["drain_seconds"] = round(time.monotonic() - published, 1)
        with contextlib.closing(cluster.client()) as r:
            summary = check(r, driver.acked)
        exits = list(cluster.exits)
    return {
        "scenario": name,
        "events": summary.pop("events"),
        "faults": sum(run.faults.values()),
        **summary,
        "seed": seed,
        "ordered": ordered,
        "continuous": continuous,
        "fault_kinds": dict(run.faults),
        "hostile": len(hostile),
        "stalled_rounds": driver.stalled_rounds,
        "not_drained": 0 if drained else 1,
        "service_exits": len(exits),
        **({"service_exit_details": exits} if exits else {}),
        "publish_resends": driver.resends,
        **({"offline": offline_plan} if offline_plan else {}),
        "recognised_duplicates": log_events(workdir, "event_duplicate"),
        "log_lines_with_health_values": health_values_in_logs(workdir),
        **run.notes,
        "seconds": round(time.monotonic() - began, 1),
    }


def drain(cluster: Cluster, timeout: float, stuck_after: float = 20.0) -> bool:
    """Both groups have no lag and nothing pending, twice in a row half a second apart
    (the notifier's stream grows while the gatekeeper still works), and every decision
    that calls for a message has its receipt (the notifier's outbox is empty).
    Gives up early when nothing at all moved for `stuck_after` seconds."""
    deadline = time.monotonic() + timeout
    with contextlib.closing(cluster.client()) as r:
        moved_at, last = time.monotonic(), None
        while time.monotonic() < deadline:
            if all(group_done(r, s, g) for s, g in GROUPS):
                time.sleep(0.5)
                if all(group_done(r, s, g) for s, g in GROUPS):
                    return wait_until(lambda: _delivered(r), deadline - time.monotonic(), 0.5)
            now = _progress(r)
            if now != last:
                moved_at, last = time.monotonic(), now
            elif time.monotonic() - moved_at > stuck_after:
                return False
            time.sleep(0.2)
    return False


def _progress(r: redis.Redis) -> tuple[Any, ...]:
    """Changes whenever anything is read, acknowledged or written downstream."""
    try:
        groups = [
            (g["last-delivered-id"], g["pending"])
            for stream, _ in GROUPS
            for g in r.xinfo_groups(stream)
        ]
        return (*groups, r.xlen(RECEIPTS), r.xlen(INBOUND_DEAD_LETTER))
    except redis.RedisError:
        return ()


def _delivered(r: redis.Redis) -> bool:
    seen = observe(r)
    wanted = {d["decision_id"] for ds in seen.decisions.values() for d in ds
              if wants_message(d)}  # fmt: skip
    return wanted <= seen.receipted


def wants_message(decision: dict[str, Any]) -> bool:
    """Whether a decision must reach the client: any but a hold, except a late sync's
    `silent` ones (no news to the client), and a late sync's take-back (a hold)."""
    notice = decision.get("notice")
    return (decision["outcome"] != "held" and notice != "silent") or notice == "taken_back"


def log_events(workdir: Path, event: str) -> int:
    """Service log lines whose structlog event is `event`."""
    needle = f'"event": "{event}"'.encode()
    return sum(1 for path in workdir.glob("*.log") for line in path.open("rb") if needle in line)


def health_values_in_logs(workdir: Path) -> int:
    """Service log lines that carry health values (SPEC §5: logs carry ids only)."""
    needles = (b"pain_during", b"morning_pain", b"morning_stiffness")
    return sum(
        1
        for path in workdir.glob("*.log")
        for line in path.open("rb")
        if any(n in line for n in needles)
    )


# --------------------------------------------------------------------------- checking


def _xrange_all(r: redis.Redis, stream: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    start = "-"
    while True:
        chunk = r.xrange(stream, min=start, count=2000)
        if not chunk:
            return
        yield from chunk
        start = "(" + chunk[-1][0].decode()


def _pending(r: redis.Redis) -> tuple[int, int]:
    """Entries pending in either group, and the most deliveries any of them had
    (far above REHABGATE_MAX_DELIVERIES means an entry is retried forever)."""
    total = most = 0
    for stream, group in GROUPS:
        with contextlib.suppress(redis.ResponseError):
            total += int(r.xpending(stream, group)["pending"])
            rows = r.xpending_range(stream, group, min="-", max="+", count=1000)
            most = max([most, *(int(row["times_delivered"]) for row in rows)])
    return total, most


@dataclass
class Reference:
    """What the pure domain says one client's valid events, in publish order, lead to."""

    stage_id: str | None
    status: str | None
    transitions: list[tuple[str | None, str | None]]
    unlocks: int
    rejected: int
    #: Every decision: (decision id, outcome, from stage, to stage), in order.
    decisions: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)


@functools.cache
def _protocol() -> Protocol:
    return load_protocols()[PROTOCOL]


def reference(events: Sequence[Outgoing]) -> Reference:
    protocol = _protocol()
    state = None
    transitions: list[tuple[str | None, str | None]] = []
    decisions: list[tuple[str, str, str | None, str | None]] = []
    unlocks = rejected = 0
    for item in events:
        event = parse_inbound(item.fields["event"])
        try:
            if isinstance(event, ClientEnrolled):
                decision = enroll(protocol, state, event)
            else:
                assert state is not None
                decision = decide(protocol, state, event)  # type: ignore[arg-type]
        except Rejected:
            rejected += 1
            continue
        state = decision.state
        evaluation = decision.evaluation
        if evaluation is not None:
            decisions.append((str(evaluation.decision_id), evaluation.outcome,
                              evaluation.from_stage, evaluation.to_stage))  # fmt: skip
        if evaluation is not None and evaluation.outcome in TRANSITIONS:
            transitions.append((evaluation.from_stage, evaluation.to_stage))
            unlocks += evaluation.outcome in UNLOCKS
    return Reference(
        state.stage_id if state else None, state.status if state else None, transitions,
        unlocks, rejected, decisions,
    )  # fmt: skip


@dataclass
class Observed:
    """What Redis holds after the drain, read once."""

    decisions: dict[str, list[dict[str, Any]]]  # client id -> decisions in stream order
    decision_ids: Counter[str]
    unlock_ids: Counter[str]
    message_ids: Counter[str]
    receipted: set[str]  # decision ids with a delivery receipt (delivered or failed)
    letters: Counter[str]  # dead-letter entries by source entry id
    pending: int
    most_deliveries: int


def observe(r: redis.Redis) -> Observed:
    decisions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, fields in _xrange_all(r, EVALUATED):
        decision = json.loads(fields[b"event"])
        decisions[decision["client_id"]].append(decision)
    every = [d for ds in decisions.values() for d in ds]
    pending, most_deliveries = _pending(r)
    return Observed(
        decisions=decisions,
        decision_ids=Counter(d["decision_id"] for d in every),
        unlock_ids=Counter(d["decision_id"] for d in every if d["outcome"] in UNLOCKS),
        message_ids=Counter(
            json.loads(f[b"message"])["message_id"] for _, f in _xrange_all(r, MESSAGES)
        ),
        receipted={json.loads(f[b"event"])["decision_id"] for _, f in _xrange_all(r, RECEIPTS)},
        letters=Counter(f[b"source_id"].decode() for _, f in _xrange_all(r, INBOUND_DEAD_LETTER)),
        pending=pending,
        most_deliveries=most_deliveries,
    )


def _keys(client_id: str) -> ClientKeys:
    return ClientKeys.of(client_id, 1)


def _shown(r: redis.Redis, client_id: str, decisions: list[dict[str, Any]]) -> Reference:
    """The system's view of one client, in the reference model's terms: its stored
    state, and its transitions (each decision id counted once, in stream order)."""
    raw = r.hget(_keys(client_id).state, "state")
    state = json.loads(raw) if raw else {}
    first = _unique(decisions)
    return Reference(
        stage_id=state.get("stage_id"),
        status=state.get("status"),
        transitions=[
            (d["from_stage"], d["to_stage"]) for d in first if d["outcome"] in TRANSITIONS
        ],
        unlocks=sum(1 for d in first if d["outcome"] in UNLOCKS),
        rejected=0,
        decisions=[(_original_id(d), d["outcome"], d["from_stage"], d["to_stage"]) for d in first],
    )


def _unique(decisions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each decision id once (its first copy), in stream order."""
    first: dict[str, dict[str, Any]] = {}
    for d in decisions:
        first.setdefault(d["decision_id"], d)
    return list(first.values())


def _original_id(decision: dict[str, Any]) -> str:
    """The id of the decision its cause got when first decided (a correction has an
    id of its own; the model knows only the in-order decision's)."""
    if not (decision.get("supersedes") or decision.get("corrected_after")):
        return str(decision["decision_id"])
    cause = f"{decision['clinic_id']}/{decision['client_id']}/{decision['cause_event_id']}"
    return str(uuid.uuid5(DECISION_NAMESPACE, cause))


def _event_key(item: Outgoing) -> tuple[datetime, str]:
    """An event's place in event time (the domain's event_order: time, then id)."""
    event = json.loads(item.fields["event"])
    return datetime.fromisoformat(event["occurred_at"]), str(event["event_id"])


def in_event_time(decisions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A client's decisions as they stand: each id once, every decision some
    correction supersedes left out (the correction stands in its place), sorted by
    their causes' event time. Two decisions left for one cause mean a correction
    missed the decision on record (both then count against the model)."""
    unique = _unique(decisions)
    superseded = {d["supersedes"] for d in unique if d.get("supersedes")}
    kept = [d for d in unique if d["decision_id"] not in superseded]
    return sorted(kept, key=lambda d: (datetime.fromisoformat(d["occurred_at"]),
                                       str(d["cause_event_id"])))  # fmt: skip


Transition = tuple[str, str, str | None, str | None]  # cause event id, outcome, from, to


def transitions_in_event_time(decisions: Sequence[dict[str, Any]]) -> list[Transition]:
    """The system's effective transitions (every outcome but `held`), in event time."""
    return [
        (str(d["cause_event_id"]), d["outcome"], d["from_stage"], d["to_stage"])
        for d in in_event_time(decisions)
        if d["outcome"] != "held"
    ]


def model_evaluations(items: Sequence[Outgoing]) -> list[Any]:
    """The pure reference model's decisions for one client's valid events, whatever
    order they were published in: `replay` decides them in event time."""
    events = [parse_inbound(o.fields["event"]) for o in items]
    enrolment = next(e for e in events if isinstance(e, ClientEnrolled))
    rest = [e for e in events if not isinstance(e, ClientEnrolled)]
    return [
        d.evaluation
        for d in replay(_protocol(), enrolment, rest)  # type: ignore[arg-type]
        if d.evaluation is not None
    ]


def model_transitions(items: Sequence[Outgoing]) -> list[Transition]:
    return [
        (str(e.cause_event_id), e.outcome, e.from_stage, e.to_stage)
        for e in model_evaluations(items)
        if e.outcome != "held"
    ]


def model_flags(items: Sequence[Outgoing]) -> set[str]:
    """The cause events of the flags in the in-order history."""
    return {str(e.cause_event_id) for e in model_evaluations(items) if e.outcome == "flagged"}


def multi_stage(decisions: Sequence[dict[str, Any]], causes: dict[str | None, Any]) -> int:
    """Decisions (corrections included, each id once) whose move spans more than one
    stage, except a clinician's regress or advance_override to an explicit target."""
    protocol = _protocol()
    count = 0
    for d in _unique(decisions):
        if d["from_stage"] is None or d["to_stage"] is None:
            continue
        span = abs(protocol.stage_index(d["to_stage"]) - protocol.stage_index(d["from_stage"]))
        cause = causes.get(str(d["cause_event_id"]), {})
        targeted = cause.get("event_type") == "clinician.action" and cause.get("target_stage")
        count += span > 1 and not targeted
    return count


def physio_alert_check(
    r: redis.Redis, decisions: dict[str, list[dict[str, Any]]], flags: dict[str, set[str]]
) -> dict[str, int]:
    """Every flag of the in-order history (client, cause event) must have a physio
    alert for that client whose decision is a `flagged` one at that cause event (the
    original decision's or a correction's). `missing` is the violation; the rest are
    counts for the report: alerts in all, flags alerted more than once, alerts for a
    flag the in-order history does not have, and alerts for withdrawn unlocks."""
    by_id = {d["decision_id"]: d for ds in decisions.values() for d in ds}
    alerted: Counter[tuple[str, str]] = Counter()
    total = withdrawals = 0
    for _, fields in _xrange_all(r, ALERTS):
        alert = json.loads(fields[b"event"])
        decision = by_id.get(alert["decision_id"])
        if decision is None or decision["client_id"] != alert["client_id"]:
            continue
        total += 1
        if decision["outcome"] == "flagged":
            alerted[(alert["client_id"], str(decision["cause_event_id"]))] += 1
        else:
            withdrawals += 1
    wanted = {(client, cause) for client, causes in flags.items() for cause in causes}
    return {
        "missing": len(wanted - set(alerted)),
        "alerts": total,
        "model_flags": len(wanted),
        "flags_alerted_twice": sum(n - 1 for n in alerted.values()),
        "alerts_for_flags_not_in_model": len(set(alerted) - wanted),
        "alerts_for_withdrawn_unlocks": withdrawals,
    }


def message_check(r: redis.Redis, decisions: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """`contradictory`: client messages that contradict what the client was told
    before (see contradictions); the other keys count each kind of contradiction."""
    by_id = {d["decision_id"]: d for ds in decisions.values() for d in ds}
    messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, fields in _xrange_all(r, MESSAGES):
        message = json.loads(fields[b"message"])
        if message["client_id"] in decisions:
            messages[message["client_id"]].append(message)
    kinds: Counter[str] = Counter()
    bad = 0
    for client_messages in messages.values():
        found = contradictions(client_messages, by_id)
        bad += sum(1 for k in found if k)
        kinds.update(k for ks in found for k in ks)
    return {"contradictory": bad, "messages": sum(map(len, messages.values())), **kinds}


def _told_position(decision: dict[str, Any]) -> str | None:
    return "completed" if decision["outcome"] == "completed" else decision["to_stage"]


def contradictions(
    messages: Sequence[dict[str, Any]], by_id: dict[str, dict[str, Any]]
) -> list[set[str]]:
    """For each of one client's messages (in the order they were sent: the
    client-messages stream), the kinds of contradiction it contains (empty: none).

    The story a client is told is read message by message, and in each message its
    decisions (`decision_ids`, read from the evaluated stream) in order, keeping the
    moves a message tells: an unlock (the first: the welcome), a step back, a
    completion, and a correction that takes back an unlock or completion (the
    `corrected` text, "stay with <stage>"). Holds and flags tell no move. T is the
    stage the client was last told they are on ("completed" after a completion).
    A message contradicts the story (arrival order showing through) when it has:

    - `gap`: an unlock, step back or completion that does not start at T: e.g. an
      unlock message for a stage the client was already told they unlocked, without a
      step back in between; "unlocked Stage 3" when last told Stage 1; a step back
      from a stage they were never told of; anything but a correction after they
      were told they completed;
    - `untold_withdrawal`: a take-back (`notice` "taken_back": the gatekeeper marks
      the one decision of a late sync that tells the client they are not where they
      were told) that leaves the client where they were told they are;
    - `silent_decision_told`: a message carrying a decision the gatekeeper marked
      `silent` (no news to the client);
    - `unknown_decision`: a decision id that is not on the evaluated stream;
    - `flip_flop`: the moves one late event tells (its own decision and the
      corrections naming it in `corrected_after`, in whatever messages) take the
      client back to a stage they had already left in that same catch-up: e.g.
      unlocked -> stepped back -> unlocked, or unlocked -> taken back -> unlocked,
      for one late check-in.

    Each told move sets T to where it ends (a correction: the stage it says to stay
    with). A sequence that is coherent by these rules is the in-order story, even
    when it reads "unlocked, stepped back, unlocked" over separate events."""
    told: str | None = None
    told_ids: set[str] = set()
    visited: dict[str, list[str | None]] = {}  # late event -> positions its moves told
    found = []
    for message in messages:
        kinds: set[str] = set()
        for decision_id in message["decision_ids"]:
            d = by_id.get(decision_id)
            if d is None:
                kinds.add("unknown_decision")
                continue
            if d.get("notice") == "silent":
                kinds.add("silent_decision_told")  # the gatekeeper said: no news
                continue
            withdrawal = d.get("notice") == "taken_back"
            if withdrawal:
                if told == d["to_stage"]:  # nothing the client was told is taken back
                    kinds.add("untold_withdrawal")
            elif d["outcome"] in TRANSITIONS:
                if d["from_stage"] != told:
                    kinds.add("gap")
            else:
                continue
            late = d.get("corrected_after") or (
                d["cause_event_id"] if d["summary"].startswith("late ") else None
            )
            position = d["to_stage"] if withdrawal else _told_position(d)
            if late is not None:
                path = visited.setdefault(str(late), [])
                if position in path and path[-1] != position:
                    kinds.add("flip_flop")
                path.append(position)
            told = position
            told_ids.add(d["decision_id"])
        found.append(kinds)
    return found


def check(r: redis.Redis, acked: Sequence[tuple[Outgoing, str]]) -> dict[str, Any]:
    """Every invariant, from what Redis holds after the drain. Counts only, plus the
    first few divergent clients described for the report."""
    valid: dict[str, list[Outgoing]] = defaultdict(list)
    for item, _ in acked:
        if item.hostile is None and item.client_id is not None:
            valid[item.client_id].append(item)
    hostile = [(item, entry_id) for item, entry_id in acked if item.hostile is not None]
    seen = observe(r)
    touched = set(valid) | {o.client_id for o, _ in hostile if o.client_id}
    processed = {c: {m.decode() for m in r.smembers(_keys(c).processed)} for c in touched}

    divergent, over_unlocked, examples = 0, 0, []
    late_in_order = differing = transitions_differing = 0
    late_clients = 0
    for client_id, items in valid.items():
        # The model takes events in event time: for a client published in order that
        # is its publish order; a client with late events is compared with what the
        # system records in event time (each correction in place of what it supersedes).
        in_order = published_in_order(items)
        late_clients += not in_order
        decisions = seen.decisions[client_id]
        want = reference(sorted(items, key=_event_key))
        got = _shown(r, client_id, decisions if in_order else in_event_time(decisions))
        over_unlocked += got.unlocks > want.unlocks
        if in_order:
            late_in_order += late_reevaluations(items, decisions)
        differing += decisions_differing(want.decisions, got.decisions)
        transitions_differing += decisions_differing(
            model_transitions(items), transitions_in_event_time(decisions)
        )
        if (got.stage_id, got.status, got.transitions) != (
            want.stage_id, want.status, want.transitions
        ):  # fmt: skip
            divergent += 1
            if len(examples) < 3:
                examples.append({"client": client_id, "shown": got.__dict__,
                                 "model": want.__dict__})  # fmt: skip

    hostile_ids = {entry_id for _, entry_id in hostile}
    writes = sum(
        1
        for item, _ in hostile
        if item.client_id is not None
        and (
            item.event_id in processed[item.client_id]
            or (item.hostile == "unknown_client" and r.exists(_keys(item.client_id).state))
        )
    )
    needs_message = {
        d["decision_id"] for ds in seen.decisions.values() for d in ds if wants_message(d)
    }
    mine = {c: seen.decisions[c] for c in valid}
    causes = {o.event_id: json.loads(o.fields["event"]) for items in valid.values() for o in items}
    alerts = physio_alert_check(r, mine, {c: model_flags(items) for c, items in valid.items()})
    told = message_check(r, mine)
    summary: dict[str, Any] = {
        "events": sum(len(v) for v in valid.values()),
        "lost": sum(
            1 for c, items in valid.items() for o in items if o.event_id not in processed[c]
        ),
        "duplicate_unlocks": sum(n - 1 for n in seen.unlock_ids.values()) + over_unlocked,
        "duplicate_messages": sum(n - 1 for n in seen.message_ids.values()),
        "pending_left": seen.pending,
        "pending_max_deliveries": seen.most_deliveries,
        "dead_lettered": sum(seen.letters.values()),
        "divergent_decisions": divergent,
        "late_reevaluations_of_in_order_clients": late_in_order,
        "decisions_differing_from_model": differing,
        "multi_stage_decisions": sum(multi_stage(ds, causes) for ds in mine.values()),
        "transitions_differing_from_model": transitions_differing,
        "missing_physio_alerts": alerts.pop("missing"),
        "contradictory_messages": told.pop("contradictory"),
        "duplicate_decisions": sum(n - 1 for n in seen.decision_ids.values()),
        "missing_messages": len(needs_message - seen.receipted),
        "unexpected_dead_letters": sum(n for i, n in seen.letters.items() if i not in hostile_ids),
        "hostile_not_dead_lettered": len(hostile_ids - set(seen.letters)),
        "dead_letter_repeats": sum(n - 1 for i, n in seen.letters.items() if i in hostile_ids),
        "hostile_state_writes": writes,
        "clients": len(valid),
        "outcomes": dict(
            Counter(d["outcome"] for ds in seen.decisions.values() for d in ds).most_common()
        ),
        "messages": sum(seen.message_ids.values()),
        "clients_with_late_events": late_clients,
        "corrections": sum(
            1
            for ds in mine.values()
            for d in _unique(ds)
            if d.get("supersedes") or d.get("corrected_after")
        ),
        "physio_alerts": alerts,
        "told": told,
    }
    if examples:
        summary["divergence_examples"] = examples
    return summary


def published_in_order(items: Sequence[Outgoing]) -> bool:
    """A client's valid events were published (acknowledged XADDs, in order) in
    event-time order."""
    times = [json.loads(o.fields["event"])["occurred_at"] for o in items]
    return all(datetime.fromisoformat(a) <= datetime.fromisoformat(b)
               for a, b in itertools.pairwise(times))  # fmt: skip


def late_reevaluations(items: Sequence[Outgoing], decisions: Sequence[dict[str, Any]]) -> int:
    """Decisions (each id once, in stream order) taken for a late event (its summary
    says so, or it supersedes or corrects another decision), or whose cause was
    published before the cause of an earlier one: none, when arrival kept order."""
    published = {o.event_id: n for n, o in enumerate(items)}
    late, newest, ids = 0, -1, set()
    for d in decisions:
        if d["decision_id"] in ids:
            continue
        ids.add(d["decision_id"])
        at = published.get(d["cause_event_id"], newest)
        late += (
            at < newest
            or d["summary"].startswith("late ")
            or "re-evaluated" in d["summary"]
            or bool(d.get("supersedes") or d.get("corrected_after"))
        )
        newest = max(newest, at)
    return late


def decisions_differing(want: Sequence[Any], got: Sequence[Any]) -> int:
    """How many places of the longer sequence the other does not match in order
    (its length minus the decisions the two have in common, in the same order)."""
    matcher = difflib.SequenceMatcher(a=list(want), b=list(got), autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    return max(len(want), len(got)) - same


def violations(summary: dict[str, Any]) -> dict[str, int]:
    """The non-zero violation counts of one summary."""
    return {k: int(summary[k]) for k in VIOLATIONS if summary.get(k)}
