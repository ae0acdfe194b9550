"""Installed rehabgate claims one import name, and every way of running it resolves."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import uuid
import zipfile
from pathlib import Path

import pytest

from rehabgate.services.cli.health import check
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for top in ("schemas", "services"):
        for path in (ROOT / top).rglob("*"):
            if (
                path.suffix in (".py", ".json", ".yaml", ".lua", ".j2", ".html", ".css")
                and "__pycache__" not in path.parts
            ):
                relative = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
                found.add(f"rehabgate.{relative}")
    assert found == listed


@pytest.mark.slow
def test_wheel_holds_only_the_rehabgate_namespace_with_its_data(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("rehabgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"rehabgate"}
    for needed in (
        "rehabgate/schemas/json/session.logged.v1.schema.json",
        "rehabgate/services/gatekeeper/protocols/achilles-tendinopathy@1.yaml",
        "rehabgate/services/gatekeeper/commit_step.lua",
        "rehabgate/services/gatekeeper/load_step.lua",
        "rehabgate/services/gatekeeper/audit/entry_dictionary_1.json",
        "rehabgate/services/notifier/outbox/deliver_step.lua",
        "rehabgate/services/notifier/outbox/schedule_step.lua",
        "rehabgate/services/notifier/templates/en/unlocked.txt.j2",
        "rehabgate/services/notifier/templates/de/email.html.j2",
    ):
        assert needed in names


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("service", ["gatekeeper", "notifier"])
def test_faststream_run_resolves_the_app_and_it_reports_healthy(
    redis_url: str, service: str
) -> None:
    faststream = Path(sys.executable).with_name("faststream")
    consumer = f"packaging-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [str(faststream), "run", "--factory", f"rehabgate.services.{service}.app:create_app"],
        env={**os.environ, "REDIS_URL": redis_url, "REHABGATE_CONSUMER": consumer},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Healthy, or exited (then its stderr below says why).
        def settled() -> tuple[bool, str] | None:
            answer = check(redis_url, service, consumer)
            return answer if answer[0] or process.poll() is not None else None

        healthy, detail = wait_for(settled, every=0.2, what=f"the {service} healthy")
        assert healthy, detail
    finally:
        process.terminate()
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err.decode()[-2000:]
