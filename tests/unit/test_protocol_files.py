"""Protocol files: a bad one fails start-up naming file, path and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from rehabgate.services.gatekeeper.protocol_files import (
    SHIPPED_DIR,
    ProtocolFileError,
    load_protocol,
    load_protocols,
)

ACHILLES = SHIPPED_DIR / "achilles-tendinopathy@1.yaml"


def copy_with(tmp_path: Path, old: str, new: str, name: str = "achilles-tendinopathy@1") -> Path:
    text = ACHILLES.read_text()
    assert old in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_shipped_protocols_load() -> None:
    protocols = load_protocols()
    achilles = protocols["achilles-tendinopathy@1"]
    assert [s.id for s in achilles.stages][:2] == ["start-loading", "start-strengthening"]


@pytest.mark.parametrize(
    ("old", "new", "path", "reason"),
    [
        ("min_days: 14", "min_days: -3", "stages.0.exit_criteria.0.days_at_stage.min_days",
         "greater than or equal to 0"),
        ("kind: sessions_completed", "kind: vibes", "stages.0.exit_criteria.1", "does not match"),
        ("source: silbernagel-2007}", "source: somebody-said}", "(document)",
         "somebody-said"),
        ("    name: \"Stage 1: start loading\"\n", "", "stages.0.name", "Field required"),
        ("id: start-strengthening", "id: start-loading", "(document)", "unique"),
    ],
)  # fmt: skip
def test_invalid_protocol_names_file_path_and_reason(
    tmp_path: Path, old: str, new: str, path: str, reason: str
) -> None:
    bad = copy_with(tmp_path, old, new)
    with pytest.raises(ProtocolFileError) as caught:
        load_protocol(bad)
    assert caught.value.file == bad
    assert caught.value.path == path
    assert reason in caught.value.reason
    assert str(bad) in str(caught.value)


def test_broken_yaml_reports_line(tmp_path: Path) -> None:
    bad = tmp_path / "x@1.yaml"
    bad.write_text("id: x\nstages: [\n")
    with pytest.raises(ProtocolFileError) as caught:
        load_protocol(bad)
    assert caught.value.path.startswith("line ")


def test_file_name_must_match_id_and_version(tmp_path: Path) -> None:
    bad = copy_with(tmp_path, "version: 1", "version: 1", name="achilles-tendinopathy@3")
    with pytest.raises(ProtocolFileError, match=r"must be named achilles-tendinopathy@1\.yaml"):
        load_protocol(bad)


def test_clinic_directory_adds_protocols_and_refuses_redefinition(tmp_path: Path) -> None:
    copy_with(tmp_path, "version: 1", "version: 3", name="achilles-tendinopathy@3")
    assert "achilles-tendinopathy@3" in load_protocols([tmp_path])
    copy_with(tmp_path, "version: 1", "version: 1")
    with pytest.raises(ProtocolFileError, match="defined twice"):
        load_protocols([tmp_path])
