"""`python -m tests.faults [--size full|short] [--seed N] [--only NAME ...] [--unordered]`

Runs the fault scenarios (all at full size by default), prints one JSON line per
scenario and then one line `FAULTS {json}` aggregating them, so a script can
check it. Exits 1 when any invariant was violated (or a scenario failed to run);
the scenarios' logs are then kept and their directory printed on stderr.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from .harness import VIOLATIONS, violations
from .scenarios import SCENARIOS

TOTALS = ("events", "faults", "lost", "duplicate_unlocks", "duplicate_messages",
          "pending_left", "dead_lettered", "divergent_decisions",
          "late_reevaluations_of_in_order_clients", "decisions_differing_from_model",
          "multi_stage_decisions", "transitions_differing_from_model", "missing_physio_alerts",
          "contradictory_messages")  # fmt: skip


def aggregate(summaries: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One line for scripts: totals of the required keys, every violation count
    summed, which scenarios failed, and `ok`."""
    failed = [s["scenario"] for s in summaries if "error" in s or violations(s)]
    return {
        "scenarios": len(summaries),
        **{key: sum(int(s.get(key, 0)) for s in summaries) for key in TOTALS},
        "violations": {
            key: total
            for key in VIOLATIONS
            if (total := sum(int(s.get(key, 0)) for s in summaries))
        },
        "failed": failed,
        "ok": not failed,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--size", choices=["short", "full"], default="full")
    parser.add_argument("--seed", type=int, default=None, help="one seed for every scenario")
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), default=None)
    parser.add_argument(
        "--unordered",
        action="store_true",
        help="publish each round without waiting for the previous one to be applied, so "
        "redelivered events arrive late (exercises the domain's late-event handling)",
    )
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="rehabgate-faults-"))
    began = time.monotonic()
    summaries = []
    for index, (name, scenario) in enumerate(SCENARIOS.items(), start=1):
        if args.only and name not in args.only:
            continue
        seed = args.seed if args.seed is not None else index
        try:
            summary = scenario(args.size, root / name, seed, ordered=not args.unordered)
        except Exception as exc:
            traceback.print_exc()
            summary = {"scenario": name, "seed": seed, "error": repr(exc)}
        summaries.append(summary)
        print(json.dumps(summary), flush=True)
    total = aggregate(summaries, time.monotonic() - began)
    print("FAULTS " + json.dumps(total), flush=True)
    if total["ok"]:
        shutil.rmtree(root, ignore_errors=True)
        return 0
    print(f"faults: logs and Redis data kept in {root}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
