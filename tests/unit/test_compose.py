"""compose.yaml cannot be run here (no Docker engine), so check what can be checked:
the services exist, Redis is pinned 7.x with AOF, everything has a healthcheck,
and every rehabgate command it names exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rehabgate.services.cli.main import COMMANDS

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def rehabgate_commands(argv: list[str]) -> list[list[str]]:
    """Every `rehabgate ...` invocation in an argv, including inside `sh -c`."""
    words = " ".join(argv).replace("&&", " && ").split()
    found = []
    for index, word in enumerate(words):
        if word == "rehabgate":
            found.append(words[index + 1 : index + 3])
    return found


def test_has_redis_gatekeeper_and_notifier(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"redis", "gatekeeper", "notifier"}


def test_redis_is_pinned_7x_with_aof(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7.")
    assert redis["image"].count(".") == 2  # pinned to a patch release, not a moving tag
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize("service", ["redis", "gatekeeper", "notifier"])
def test_every_service_has_a_healthcheck(compose: dict[str, Any], service: str) -> None:
    assert compose["services"][service]["healthcheck"]["test"]


def test_every_rehabgate_command_named_exists(compose: dict[str, Any]) -> None:
    named = []
    for service in ("gatekeeper", "notifier"):
        spec = compose["services"][service]
        named += rehabgate_commands(spec["command"]) + rehabgate_commands(
            spec["healthcheck"]["test"]
        )
    assert len(named) == 4
    for words in named:
        assert words[0] in COMMANDS, f"compose.yaml names unknown command: rehabgate {words}"
    assert ["health", "gatekeeper"] in named
    assert ["health", "notifier"] in named
