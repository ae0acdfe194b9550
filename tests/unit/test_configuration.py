"""Configuration (issue 8): environment variables and an optional dotenv file
(`REHABGATE_CONFIG`, the environment wins); invalid settings stop every service
entry point with one line per error naming the variable, and exit code 2; and the
README's Configuration table lists every setting, so it cannot go stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rehabgate.services.common.settings import (
    CONFIG_VARIABLE,
    InvalidSettings,
    Settings,
    env_name,
    load_settings,
)

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_AN_INTEGER = (
    "invalid configuration: REHABGATE_PARTITIONS: "
    "Input should be a valid integer, unable to parse string as an integer"
)


def configuration_table() -> set[str]:
    """The variables named in the first column of README's Configuration table."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}


def test_readme_table_names_every_setting_and_nothing_else() -> None:
    documented = configuration_table()
    settings = {env_name(field) for field in Settings.model_fields}
    assert settings - documented == set(), "settings missing from README ## Configuration"
    assert documented - settings == {CONFIG_VARIABLE}, "README documents unknown settings"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("REHABGATE_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    return monkeypatch


def test_a_config_file_sets_what_the_environment_does_not(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "rehabgate.env"
    config.write_text("REDIS_URL=redis://from-file:6379/0\nREHABGATE_BATCH_SIZE=7\n"
                      "REHABGATE_PARTITIONS=3\n")  # fmt: skip
    clean_env.setenv(CONFIG_VARIABLE, str(config))
    clean_env.setenv("REHABGATE_PARTITIONS", "5")
    settings = load_settings()
    assert (settings.redis_url, settings.batch_size, settings.partitions) == (
        "redis://from-file:6379/0", 7, 5,  # the environment wins
    )  # fmt: skip


def test_errors_name_each_variable_and_never_its_value(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REHABGATE_SMTP_PORT", "0")
    clean_env.setenv("REHABGATE_WEBHOOKS", '{"c": {"url": "x", "secret": "whsec_secret-value"}}')
    with pytest.raises(InvalidSettings) as raised:
        load_settings()
    lines = str(raised.value).splitlines()
    assert lines == [
        "REHABGATE_SMTP_PORT: Input should be greater than or equal to 1",
        "REHABGATE_WEBHOOKS: c.url: Input should be a valid URL, relative URL without a base",
        "REHABGATE_WEBHOOKS: c.secret: Value error, secret: expected whsec_ followed by base64",
    ]
    assert "secret-value" not in str(raised.value)


def test_json_that_does_not_parse_names_its_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REHABGATE_CLINICS", "{not json")
    with pytest.raises(InvalidSettings, match=r"^REHABGATE_CLINICS: not valid JSON \("):
        load_settings()


def test_a_missing_config_file_is_an_error(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv(CONFIG_VARIABLE, str(tmp_path / "nowhere.env"))
    with pytest.raises(InvalidSettings, match=rf"^{CONFIG_VARIABLE}: no such file: "):
        load_settings()


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REHABGATE_")}
    return subprocess.run(
        argv, env={**base, "REDIS_URL": "redis://127.0.0.1:1/0", **env}, cwd=cwd,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("command", ["gatekeeper", "notifier", "up", "demo"])
def test_commands_refuse_invalid_settings_with_exit_code_2(command: str, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "rehabgate.services.cli.main", command]
    done = run(argv, tmp_path, REHABGATE_PARTITIONS="many")
    assert (done.returncode, done.stderr) == (2, NOT_AN_INTEGER + "\n")
    assert done.stdout == ""  # nothing started


@pytest.mark.slow
def test_invalid_settings_in_the_config_file_are_refused_too(tmp_path: Path) -> None:
    config = tmp_path / "rehabgate.env"
    config.write_text("REHABGATE_BATCH_SIZE=0\n")
    argv = [sys.executable, "-m", "rehabgate.services.cli.main", "gatekeeper"]
    done = run(argv, tmp_path, REHABGATE_CONFIG=str(config))
    assert done.returncode == 2
    assert done.stderr == (
        "invalid configuration: REHABGATE_BATCH_SIZE: Input should be greater than or equal to 1\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("service", ["gatekeeper", "notifier"])
def test_faststream_run_refuses_invalid_settings_with_exit_code_2(
    service: str, tmp_path: Path
) -> None:
    faststream = Path(sys.executable).with_name("faststream")
    argv = [str(faststream), "run", "--factory", f"rehabgate.services.{service}.app:create_app"]
    done = run(argv, tmp_path, REHABGATE_PARTITIONS="many")
    assert done.returncode == 2, done.stderr[-2000:]
    assert NOT_AN_INTEGER in done.stderr.splitlines()


def test_each_service_reads_only_its_own_settings() -> None:
    """One class of ~45 fields served every process; now each reads its part."""
    from rehabgate.services.common.settings import (
        CommonSettings,
        GatekeeperSettings,
        IngestSettings,
        NotifierSettings,
    )

    gatekeeper, notifier = set(GatekeeperSettings.model_fields), set(NotifierSettings.model_fields)
    ingest = set(IngestSettings.model_fields)
    common = set(CommonSettings.model_fields)
    assert {"clinics", "max_event_bytes", "protocol_dirs"} <= gatekeeper - notifier
    assert {"smtp_host", "webhooks", "coalesce_window_s"} <= notifier - gatekeeper
    assert common == gatekeeper & notifier
    # The ingest applies the gatekeeper's contract at the edge: its clinics and limits.
    assert ingest & gatekeeper - common == {
        "clinics", "signature_tolerance_s", "max_event_bytes", "max_future_s"
    }  # fmt: skip
    assert not ingest & notifier - common
    assert set(Settings.model_fields) - gatekeeper - notifier - ingest == {"acl_passwords"}


def test_the_readme_says_which_service_reads_each_setting() -> None:
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    readers = {
        re.findall(r"`([A-Z_]+)`", row.split("|")[1])[0]: row.split("|")[3].strip()
        for row in section.splitlines()
        if row.startswith("| `")
    }
    assert readers["REHABGATE_SMTP_HOST"] == "notifier"
    assert readers["REHABGATE_CLINICS"] == "gatekeeper, ingest"
    assert readers["REHABGATE_INGEST_MAX_BATCH"] == "ingest"
    assert readers["REDIS_URL"] == "all"
    assert readers["REHABGATE_ACL_PASSWORDS"] == "CLI"
