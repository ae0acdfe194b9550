"""compose.yaml cannot be run here (no Docker engine), so check what can be checked:
the services exist, Redis is pinned 7.x with AOF, everything has a healthcheck,
and every rehabgate command it names exists; the gatekeeper and notifier run the
image the Dockerfile builds, install nothing at start and get the settings a
clinic needs; and the opt-in `observability` profile's wiring: Prometheus scrapes
where the services listen, Grafana is provisioned with that Prometheus and a
dashboard that asks only for metrics the services expose.
`ops/check-compose.sh` validates the file with docker-compose and the Compose
Specification's JSON Schema; tests/integration/test_container_image.py runs the
image's install and the services with compose's environment."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from rehabgate.services.cli.main import COMMANDS
from rehabgate.services.common.metrics import GatekeeperMetrics, NotifierMetrics
from rehabgate.services.common.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
OPS = ROOT / "ops"


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
    default = {name for name, spec in compose["services"].items() if not spec.get("profiles")}
    assert default == {"redis", "gatekeeper", "notifier", "ingest"}


def test_redis_is_pinned_7x_with_aof(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:7.")
    assert redis["image"].count(".") == 2  # pinned to a patch release, not a moving tag
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"


@pytest.mark.parametrize("service", ["redis", "gatekeeper", "notifier", "ingest"])
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


# -- the image, and what the services are given ------------------------------------

RUNS_THE_IMAGE = ("gatekeeper", "notifier", "ingest")


def test_the_ingest_is_its_own_redis_user_and_is_checked_where_it_listens(
    compose: dict[str, Any],
) -> None:
    spec = compose["services"]["ingest"]
    assert spec["environment"]["REDIS_URL"].startswith("redis://ingest:${REDIS_PASSWORD_INGEST:?")
    port = Settings.model_fields["ingest_http_port"].default
    assert f"http://127.0.0.1:{port}/health/ready" in " ".join(spec["healthcheck"]["test"])
    assert spec["ports"] == [f"127.0.0.1:{port}:{port}"]


@pytest.mark.parametrize("service", RUNS_THE_IMAGE)
def test_services_run_the_image_the_dockerfile_builds(
    compose: dict[str, Any], service: str
) -> None:
    spec = compose["services"][service]
    assert spec["build"]["context"] == "."
    assert (ROOT / spec["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    images = {compose["services"][name]["image"] for name in RUNS_THE_IMAGE}
    assert images == {spec["image"]}  # one image, built once, for both
    assert spec["image"].startswith("rehabgate:")


@pytest.mark.parametrize("service", RUNS_THE_IMAGE)
def test_nothing_is_installed_or_mounted_at_start(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["command"] == ["rehabgate", service]  # exec form: no shell, no pip
    assert "entrypoint" not in spec
    assert "volumes" not in spec  # the code is in the image, not mounted from here
    words = json.dumps([spec["command"], spec["healthcheck"]["test"]])
    assert not re.search(r"\bpip3?\b|install|\bsh\b", words), words
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert "pip-cache" not in (compose.get("volumes") or {})


def test_every_rehabgate_variable_passed_is_a_setting(compose: dict[str, Any]) -> None:
    """A misspelt variable would be passed, ignored, and its setting silently default."""
    known = {env_name(field) for field in Settings.model_fields}
    for service in RUNS_THE_IMAGE:
        for name in compose["services"][service]["environment"]:
            assert name in known, f"{service}: {name} is no rehabgate setting"


def test_physio_tokens_are_required_not_defaulted(compose: dict[str, Any]) -> None:
    """Defaulted to {}, every physio got 401; now compose refuses to start without them."""
    value = compose["services"]["gatekeeper"]["environment"]["REHABGATE_CLINIC_TOKENS"]
    assert re.fullmatch(r"\$\{REHABGATE_CLINIC_TOKENS:\?[^}]+\}", value), value


def test_notifier_is_passed_every_smtp_and_webhook_setting(compose: dict[str, Any]) -> None:
    channel_settings = {
        env_name(field)
        for field in Settings.model_fields
        if field.startswith(("smtp_", "webhook"))
    }
    assert "REHABGATE_WEBHOOKS" in channel_settings
    assert "REHABGATE_SMTP_PASSWORD" in channel_settings
    environment = compose["services"]["notifier"]["environment"]
    assert channel_settings <= set(environment), channel_settings - set(environment)
    for name in channel_settings:
        # passed through only when set: an empty default would break settings
        # (an empty REHABGATE_SMTP_PORT does not parse; an empty user logs in as "")
        assert environment[name] is None, name


def test_both_services_are_given_the_same_partitions(compose: dict[str, Any]) -> None:
    values = {
        str(compose["services"][s]["environment"]["REHABGATE_PARTITIONS"]) for s in RUNS_THE_IMAGE
    }
    assert len(values) == 1


# -- the observability profile ------------------------------------------------------


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """The sample names a registry's metrics expose (a counter `x`: `x_total`, a
    histogram: `x_bucket`, `x_sum`, `x_count`), whether or not any was counted yet."""
    suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"]}
    return {f.name + suffix for f in registry.collect() for suffix in suffixes[f.type]}


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((OPS / "grafana/dashboards/rehabgate.json").read_text())
    return document


def test_observability_services_are_opt_in(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        spec = compose["services"][name]
        assert spec["profiles"] == ["observability"]
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", spec["image"].split(":")[1])  # pinned
        assert all(port.startswith("127.0.0.1:") for port in spec["ports"])


def test_services_listen_on_the_container_interface(compose: dict[str, Any]) -> None:
    for name in RUNS_THE_IMAGE:
        assert compose["services"][name]["environment"]["REHABGATE_HTTP_HOST"] == "0.0.0.0"  # noqa: S104


def test_prometheus_scrapes_every_service_where_it_listens(compose: dict[str, Any]) -> None:
    mounted = compose["services"]["prometheus"]["volumes"][0].split(":")
    assert (ROOT / mounted[0]).resolve() == OPS / "prometheus/prometheus.yml"
    config = yaml.safe_load((OPS / "prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    ports = {
        "gatekeeper": "http_port",
        "notifier": "notifier_http_port",
        "ingest": "ingest_http_port",
    }
    for service, field in ports.items():
        env = compose["services"][service]["environment"]
        port = env.get(f"REHABGATE_{field.upper()}", Settings.model_fields[field].default)
        assert targets[service] == ("/metrics", f"{service}:{port}")
    assert set(targets) == set(ports)


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose: dict[str, Any]) -> None:
    volumes = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert volumes["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioning = OPS / "grafana/provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    (provider,) = yaml.safe_load((provisioning / "dashboards/rehabgate.yml").read_text())[
        "providers"
    ]
    assert volumes["./ops/grafana/dashboards"] == provider["options"]["path"]
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert panel["targets"]


def test_dashboard_has_the_operator_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for wanted in ("decisions/s by outcome", "lag", "pending", "dead letters by reason",
                   "by channel", "latency"):  # fmt: skip
        assert wanted in titles, wanted


def test_dashboard_asks_only_for_metrics_the_services_expose() -> None:
    """Against the metric definitions here; tests/integration/test_operations.py
    checks the same against a real scrape after a flow."""
    exposed = exposed_names(GatekeeperMetrics().registry) | exposed_names(
        NotifierMetrics().registry
    )
    expressions = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    used = {m for e in expressions for m in re.findall(r"\b(?:rehabgate|faststream)_\w+", e)}
    assert {"rehabgate_decisions_total", "rehabgate_stream_lag", "rehabgate_stream_pending",
            "rehabgate_dead_letters_total", "rehabgate_deliveries_total"} <= used  # fmt: skip
    assert any(name.endswith("_duration_seconds_bucket") for name in used)
    assert used <= exposed, used - exposed
