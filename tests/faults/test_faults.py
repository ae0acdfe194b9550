"""The fault scenarios at short size, inside `make test`: each must end with every
invariant intact (no loss, no double unlock or message, nothing left pending, the
hostile input and only it dead-lettered, and the reference model's decisions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.faults.harness import violations
from tests.faults.scenarios import SCENARIOS

pytestmark = [pytest.mark.faults, pytest.mark.integration]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_keeps_every_invariant(name: str, tmp_path: Path) -> None:
    summary = SCENARIOS[name]("short", tmp_path / name, list(SCENARIOS).index(name) + 1)
    print(json.dumps(summary))
    assert violations(summary) == {}, (
        f"{name} violated invariants (logs in {tmp_path}):\n{json.dumps(summary, indent=1)}"
    )
