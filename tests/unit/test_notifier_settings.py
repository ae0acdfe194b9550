"""Notifier channel settings from the environment, as `rehabgate up` reads them."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from rehabgate.services.common.settings import Settings, WebhookEndpoint
from rehabgate.services.notifier.app import external_channels

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_webhooks_and_smtp_come_from_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "REHABGATE_WEBHOOKS",
        f'{{"clinic-a": {{"url": "https://hooks.clinic-a.example/rg", "secret": "{SECRET}"}}}}',
    )
    monkeypatch.setenv("REHABGATE_SMTP_HOST", "smtp.clinic-a.example")
    monkeypatch.setenv("REHABGATE_SMTP_FROM", "Rehab <rehab@clinic-a.example>")
    monkeypatch.setenv("REHABGATE_SMTP_PASSWORD", "hunter2")

    settings = Settings()

    assert settings.webhooks["clinic-a"].key() == b"k" * 32
    assert "hunter2" not in repr(settings)
    assert SECRET not in repr(settings)
    assert sorted(external_channels(settings)) == ["email", "webhook"]


def test_no_channel_settings_means_the_stream_only() -> None:
    assert external_channels(Settings(redis_url="redis://x")) == {}


@pytest.mark.parametrize(
    "secret",
    ["not-prefixed", "whsec_" + base64.b64encode(b"short").decode(), "whsec_%%%"],
)
def test_a_webhook_secret_must_be_a_standard_webhooks_secret(secret: str) -> None:
    with pytest.raises(ValidationError):
        WebhookEndpoint.model_validate({"url": "https://x.example", "secret": secret})


def test_smtp_without_a_from_address_is_refused_at_start() -> None:
    with pytest.raises(SystemExit):
        external_channels(Settings(redis_url="redis://x", smtp_host="smtp.example"))
