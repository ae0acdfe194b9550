"""The fault scenarios (reliability.md §5: S1, S3, S4, S10, S8, and issue 14's
crash-continuous and offline-sync), each sized "short" (inside `make test`) or "full" (`make faults`).

Each function starts its own Redis in `workdir`, runs the workload with its
faults, drains and returns the summary dict; `options` go to harness.run_scenario
(e.g. `ordered=False`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness import CLAIM_IDLE_MS, GROUPS, Run, Service, run_scenario, wait_until

#: (events, faults, publish rate in events/s) per scenario and size. The rate makes a
#: run last long enough for its faults (a gatekeeper restart takes about 2 s).
SIZES: dict[str, dict[str, tuple[int, int, float | None]]] = {
    "short": {
        "gatekeeper_kills": (1500, 2, 120),
        "zombie": (1500, 2, 150),
        "redis_kill": (1500, 2, 200),
        "poison": (1500, 0, None),
        "network": (1500, 3, 150),
        "crash-continuous": (2400, 4, 150),
        "offline-sync": (1500, 3, 120),
    },
    "full": {
        "gatekeeper_kills": (20_000, 12, 300),
        "zombie": (8_000, 6, 250),
        "redis_kill": (8_000, 5, 300),
        "poison": (8_000, 0, None),
        "network": (8_000, 9, 250),
        "crash-continuous": (20_000, 14, 250),
        "offline-sync": (10_000, 10, 170),
    },
}

Summary = dict[str, Any]


def _bounds(size: str) -> dict[str, float]:
    """How long a round may take to be applied, and the final drain (seconds)."""
    return (
        {"round_timeout": 20.0, "drain_timeout": 60.0}
        if size == "short"
        else {"round_timeout": 30.0, "drain_timeout": 120.0}
    )


def gatekeeper_kills(size: str, workdir: Path, seed: int = 1, **options: Any) -> Summary:
    """SIGKILL gatekeepers at random points (and the notifier now and then); each is
    restarted after a moment, half the time under its old consumer name, half under
    a new one. The claimers take over what the dead ones left pending."""
    events, kills, rate = SIZES[size]["gatekeeper_kills"]
    plan = ["gatekeeper"] * kills + ["notifier"] * max(1, kills // 6)

    def faults(run: Run) -> None:
        _kill_and_restart(run, plan)

    return run_scenario(
        "gatekeeper_kills", workdir, seed, events, faults, rate=rate, **_bounds(size), **options
    )


def zombie(size: str, workdir: Path, seed: int = 2, **options: Any) -> Summary:
    """SIGSTOP a gatekeeper while it holds a batch, for three claim-idle periods, so
    the other gatekeeper's claimer takes the batch over; then SIGCONT: the zombie
    finishes its stale batch, and every one of its steps must be refused."""
    events, pauses, rate = SIZES[size]["zombie"]

    def faults(run: Run) -> None:
        held_total = reclaimed = 0
        for point in run.points(pauses):
            if not run.wait_progress(point):
                break
            victim = run.rng.choice(run.cluster.live("gatekeeper"))
            held = _stop_while_holding(run, victim, timeout=10.0)
            if not held:
                continue
            run.faults["gatekeeper_sigstop"] += 1
            held_total += held
            try:
                time.sleep(3 * CLAIM_IDLE_MS / 1000)
                reclaimed += _pending_of(run, victim) == 0
            finally:
                run.cluster.resume(victim)
        run.notes["zombie_held_entries"] = held_total
        run.notes["zombie_work_reclaimed_before_resume"] = reclaimed

    return run_scenario(
        "zombie", workdir, seed, events, faults, rate=rate, **_bounds(size), **options
    )


def redis_kill(size: str, workdir: Path, seed: int = 3, **options: Any) -> Summary:
    """SIGKILL redis-server mid-run and restart it from its AOF (`appendfsync always`).
    Publishes that got no reply are re-sent with the same event_id."""
    events, kills, rate = SIZES[size]["redis_kill"]

    def faults(run: Run) -> None:
        for point in run.points(kills):
            if not run.wait_progress(point):
                break
            # Preferably while a round is being published: its next chunk gets no reply
            # and must be re-sent.
            wait_until(run.driver.mid_round.is_set, 2.0, 0.001)
            run.cluster.kill_redis()
            run.faults["redis_sigkill"] += 1
            time.sleep(run.rng.uniform(0.3, 1.5))
            run.cluster.restart_redis()

    return run_scenario(
        "redis_kill",
        workdir,
        seed,
        events,
        faults,
        appendfsync="always",
        rate=rate,
        **_bounds(size),
        **options,
    )


def poison(size: str, workdir: Path, seed: int = 4, **options: Any) -> Summary:
    """1% malformed or hostile entries mixed into the workload (bad JSON, bad UTF-8,
    schema violations, PII-looking ids, unknown clients, another clinic, a second
    enrolment, 1 MB payloads): all dead-lettered, nothing written, no crash loop."""
    events, _, rate = SIZES[size]["poison"]
    return run_scenario(
        "poison",
        workdir,
        seed,
        events,
        lambda run: None,
        hostile_rate=0.01,
        rate=rate,
        **_bounds(size),
        **options,
    )


def network(size: str, workdir: Path, seed: int = 5, **options: Any) -> Summary:
    """Services reach Redis through the fault proxy: latency episodes, connection
    resets and blackholes of a few seconds. They must recover by themselves and
    drain; a process that exits counts as a violation (`service_exits`)."""
    events, count, rate = SIZES[size]["network"]

    def faults(run: Run) -> None:
        proxy = run.cluster.proxy
        assert proxy is not None
        kinds = ["latency", "reset", "blackhole"] * (count // 3)
        run.rng.shuffle(kinds)
        for kind, point in zip(kinds, run.points(len(kinds)), strict=True):
            if not run.wait_progress(point):
                break
            if kind == "latency":
                proxy.set_latency(run.rng.uniform(20, 80), jitter_ms=20)
                time.sleep(run.rng.uniform(2, 4))
                proxy.set_latency(0)
            elif kind == "reset":
                proxy.reset_all()
            else:
                proxy.blackhole(run.rng.uniform(2, 4))
            run.faults[f"net_{kind}"] += 1

    return run_scenario(
        "network", workdir, seed, events, faults, proxy=True, rate=rate, **_bounds(size), **options
    )


def crash_continuous(size: str, workdir: Path, seed: int = 6, **options: Any) -> Summary:
    """Issue 14: two gatekeepers and a notifier, every client's course published in
    order as one continuous stream (clients interleaved at random, no rounds, never
    waiting for the gatekeepers), SIGKILLs spread over the run (one in seven of the
    notifier), restarts under the old or a new consumer name, and the services'
    default claim idle time (30 s). No client may see its events applied out of
    order: no late re-evaluation, every decision the in-order model's."""
    events, kills, rate = SIZES[size]["crash-continuous"]
    notifier_kills = max(1, kills // 7)
    plan = ["gatekeeper"] * (kills - notifier_kills) + ["notifier"] * notifier_kills

    def faults(run: Run) -> None:
        _kill_and_restart(run, plan, high=0.95)

    bounds = _bounds(size)
    return run_scenario(
        "crash-continuous", workdir, seed, events, faults, rate=rate, claim_idle_ms=None,
        continuous=True, round_timeout=bounds["round_timeout"],
        # The notifier's claimer takes over a killed notifier's batch after the default
        # 30 s: the drain must wait that long without counting it as stuck.
        drain_timeout=bounds["drain_timeout"] + 120, stuck_after=50.0, **options,
    )  # fmt: skip


#: Share of the clients whose phone goes offline in offline-sync (issue 14: at least 10 %).
OFFLINE_SHARE = 0.2


def offline_sync(size: str, workdir: Path, seed: int = 7, **options: Any) -> Summary:
    """Issue 14: a fifth of the clients have a phone that goes offline for 1-7 days
    (once, sometimes twice) and then delivers those days' sessions and check-ins in
    one burst, shuffled; their clinic's events (enrolment, approvals) and every other
    client's events are published in order, all as one continuous stream (as in
    crash-continuous), while gatekeepers are SIGKILLed (and the notifier, at full
    size) under the default claim idle. The records, read in event time with each
    correction in place of what it supersedes, must be the in-order model's: no
    decision moves more than one stage, every flag of the in-order history reaches a
    physio, and no client is told a story that contradicts itself."""
    events, kills, rate = SIZES[size]["offline-sync"]
    notifier_kills = kills // 7  # a notifier kill costs the default claim idle (30 s)
    plan = ["gatekeeper"] * (kills - notifier_kills) + ["notifier"] * notifier_kills

    def faults(run: Run) -> None:
        _kill_and_restart(run, plan, high=0.95)

    bounds = _bounds(size)
    return run_scenario(
        "offline-sync", workdir, seed, events, faults, rate=rate, claim_idle_ms=None,
        offline=OFFLINE_SHARE, round_timeout=bounds["round_timeout"],
        drain_timeout=bounds["drain_timeout"] + 120, stuck_after=50.0, **options,
    )  # fmt: skip


def _kill_and_restart(run: Run, plan: list[str], high: float = 0.9) -> None:
    """SIGKILL a live service of each kind in `plan` (in a random order, at points
    spread over the run), preferably while it holds a batch; restart it after a
    moment, half the time under its old consumer name, half under a new one."""
    fresh = itertools.count(1)
    plan = list(plan)
    run.rng.shuffle(plan)
    for kind, point in zip(plan, run.points(len(plan), high=high), strict=True):
        if not run.wait_progress(point):
            break
        victim = run.rng.choice(run.cluster.live(kind))
        # Aim at a moment it holds a batch (up to 2 s), else anywhere; freeze it
        # first, to count what it held at the instant of the kill.
        if not wait_until(lambda v=victim: _pending_of(run, v) > 0, 2.0, 0.005):
            time.sleep(run.rng.uniform(0.0, 0.3))
        run.cluster.pause(victim)
        held = _pending_of(run, victim)
        run.cluster.kill(victim)
        run.faults[f"{kind}_sigkill"] += 1
        run.notes["kills_holding_work"] = run.notes.get("kills_holding_work", 0) + bool(held)
        run.notes["entries_held_at_kill"] = run.notes.get("entries_held_at_kill", 0) + held
        time.sleep(run.rng.uniform(0.1, 1.0))
        same = run.rng.random() < 0.5
        consumer = victim.consumer if same else f"{victim.consumer.split('.')[0]}.{next(fresh)}"
        run.notes.setdefault("restarts", {"same_name": 0, "new_name": 0})
        run.notes["restarts"]["same_name" if same else "new_name"] += 1
        run.cluster.wait_ready([run.cluster.start(kind, consumer)])


def _pending_of(run: Run, service: Service) -> int:
    """Entries read by `service`'s main consumer and not acknowledged yet."""
    stream, group = GROUPS[0] if service.kind == "gatekeeper" else GROUPS[1]
    for info in run.client.xinfo_consumers(stream, group):
        if info["name"].decode() == service.consumer:
            return int(info["pending"])
    return 0


def _stop_while_holding(run: Run, victim: Service, timeout: float) -> int:
    """SIGSTOP `victim` at a moment it has entries pending (read, not yet acked);
    returns how many it holds, or 0 when no such moment came within `timeout`."""
    began = time.monotonic()
    while time.monotonic() < began + timeout and run.driver.is_alive():
        # Prefer a batch of some size; settle for any after half the time.
        wanted = 5 if time.monotonic() < began + timeout / 2 else 1
        if _pending_of(run, victim) >= wanted:
            run.cluster.pause(victim)
            held = _pending_of(run, victim)
            if held:
                return held
            run.cluster.resume(victim)
        time.sleep(0.002)
    return 0


SCENARIOS: dict[str, Callable[..., Summary]] = {
    "gatekeeper_kills": gatekeeper_kills,
    "zombie": zombie,
    "redis_kill": redis_kill,
    "poison": poison,
    "network": network,
    "crash-continuous": crash_continuous,
    "offline-sync": offline_sync,
}
