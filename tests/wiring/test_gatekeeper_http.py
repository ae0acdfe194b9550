"""The gatekeeper is an ASGI app: its consumers plus the physio routes, served on
the configured host and port (issue 5)."""

from __future__ import annotations

import pytest
from faststream.asgi import AsgiFastStream
from starlette.applications import Starlette

from rehabgate.services.common.settings import Settings
from rehabgate.services.gatekeeper.app import create_app

PHYSIO_PATHS = {
    "/physio",
    "/physio/",
    "/physio/client",
    "/physio/action",
    "/physio/api/clients",
    "/physio/api/history",
    "/physio/api/history.csv",
    "/physio/login",
    "/physio/logout",
    "/physio/static",
}
OPS_PATHS = {"/health/live", "/health/ready", "/metrics"}


def test_gatekeeper_app_serves_the_physio_routes_on_the_configured_address() -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0", consumer="test-consumer",
        http_host="0.0.0.0", http_port=9181,  # noqa: S104 - only read back, never bound
    )  # fmt: skip
    app = create_app(settings)
    assert isinstance(app, AsgiFastStream)
    assert {path for path, _ in app.routes} == OPS_PATHS
    # The physio web app (Starlette) gets every path under /physio.
    physio = app.mounts["/physio"]
    assert isinstance(physio, Starlette)
    assert {route.path for route in physio.routes} == PHYSIO_PATHS  # type: ignore[attr-defined]
    assert (app.http_host, app.http_port) == ("0.0.0.0", 9181)  # noqa: S104
    # A subscriber that stops for good (a lost consumer group) exits the served app.
    (subscriber, *_) = app.broker.subscribers
    assert subscriber._outer_config.fd_config.context.get("app") is app


def test_clinic_tokens_come_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REHABGATE_CLINIC_TOKENS", '{"clinic-a": "secret-a"}')
    tokens = Settings().clinic_tokens
    assert {k: v.get_secret_value() for k, v in tokens.items()} == {"clinic-a": "secret-a"}
    assert "secret-a" not in repr(Settings())
