"""The generated Redis ACL file (pure parts; tests/integration/test_security_acl.py
loads it into a real server)."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
import yaml

from rehabgate.schemas.signing import generate_key
from rehabgate.services.common.acl import env_file, env_name, generate


def test_each_clinic_may_only_xadd_to_its_own_stream() -> None:
    acl = generate(["clinic-b", "clinic-a"], {})
    lines = acl.text.splitlines()
    clinic_a = next(line for line in lines if line.startswith("user clinic.clinic-a "))
    digest = hashlib.sha256(acl.passwords["clinic.clinic-a"].encode()).hexdigest()
    assert clinic_a == (
        f"user clinic.clinic-a on #{digest} resetkeys resetchannels -@all "
        "+client|setinfo +xadd %W~rehabgate:inbound:clinic-a"
    )


def test_default_user_is_off_and_every_user_is_listed() -> None:
    acl = generate(["clinic-a"], {})
    lines = acl.text.splitlines()
    assert lines[0] == "user default off resetpass resetkeys resetchannels -@all"
    users = [line.split()[1] for line in lines]
    assert users == [
        "default", "clinic.clinic-a", "ingest", "gatekeeper", "notifier", "audit", "admin"
    ]  # fmt: skip


def test_ingest_only_mode_has_no_clinic_users_and_the_ingest_cannot_trim() -> None:
    lines = {line.split()[1]: line for line in generate(["clinic-a", "clinic-b"], {},
                                                         ingest_only=True).text.splitlines()}  # fmt: skip
    assert list(lines) == ["default", "ingest", "gatekeeper", "notifier", "audit", "admin"]
    ingest = lines["ingest"].split()
    assert "~rehabgate:inbound:clinic-a" in ingest
    assert "~{rehabgate:inbound:clinic-b}:ingested:*" in ingest
    assert "~rehabgate:inbound" not in ingest  # not the shared stream while clinics exist
    assert not {"+xtrim", "+xdel", "+del", "+@all", "~*"} & set(ingest)


def test_passwords_are_given_or_generated_and_never_in_the_file() -> None:
    acl = generate(["clinic-a"], {"gatekeeper": "given-password"})
    assert acl.passwords["gatekeeper"] == "given-password"
    assert "gatekeeper" not in acl.generated
    assert set(acl.generated) == {"clinic.clinic-a", "ingest", "notifier", "audit", "admin"}
    assert len(set(acl.passwords.values())) == len(acl.passwords)
    for password in acl.passwords.values():
        assert password not in acl.text
        assert hashlib.sha256(password.encode()).hexdigest() in acl.text


def test_services_touch_only_their_own_keys() -> None:
    lines = {line.split()[1]: line for line in generate([], {}).text.splitlines()}
    assert "~rehabgate:inbound" not in lines["notifier"]
    assert "%R~rehabgate:{p*}:client:*:contact" in lines["notifier"]
    assert "~rehabgate:{p*}:client:* " not in lines["notifier"]
    assert "+xadd" not in lines["audit"]
    assert "%R~" in lines["audit"]
    assert "~*" not in lines["gatekeeper"].replace("~rehabgate", "")
    for service in ("gatekeeper", "notifier", "audit"):
        assert "-@all" in lines[service]
        assert "+@all" not in lines[service]
        assert "+flushall" not in lines[service]
        assert "+acl" not in lines[service]


def test_redis_7_0_gets_no_client_setinfo() -> None:
    assert "+client|setinfo" not in generate(["clinic-a"], {}, (7, 0)).text
    assert "+client|setinfo" in generate(["clinic-a"], {}, (7, 2)).text


def test_env_file_names_every_password() -> None:
    acl = generate(["clinic-a"], {})
    text = env_file(acl.passwords)
    assert f"REDIS_PASSWORD_GATEKEEPER={acl.passwords['gatekeeper']}\n" in text
    assert env_name("clinic.clinic-a") == "REDIS_PASSWORD_CLINIC_CLINIC_A"
    with pytest.raises(ValueError, match="same variable"):
        env_file({"clinic.a-b": "x", "clinic.a.b": "y"})


def test_compose_loads_the_acl_file_and_gives_each_service_its_user() -> None:
    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "compose.yaml").read_text())
    redis = compose["services"]["redis"]
    assert redis["command"][redis["command"].index("--aclfile") + 1] == "/etc/rehabgate/users.acl"
    assert any(v.endswith(":/etc/rehabgate/users.acl:ro") for v in redis["volumes"])
    for service in ("gatekeeper", "notifier"):
        url = compose["services"][service]["environment"]["REDIS_URL"]
        password = f"${{REDIS_PASSWORD_{service.upper()}:?"
        assert url.startswith(f"redis://{service}:{password}")


def test_acl_generate_writes_hashes_and_a_private_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rehabgate.services.cli.main import main

    key = generate_key()
    monkeypatch.setenv("REHABGATE_CLINICS", json.dumps({"clinic-a": {"keys": [key]}}))
    monkeypatch.setenv("REHABGATE_ACL_PASSWORDS", json.dumps({"admin": "chosen-admin-pw"}))
    out = tmp_path / "secrets" / "users.acl"
    assert main(["acl", "generate", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    env = (tmp_path / "secrets" / "users.acl.env").read_text()
    assert stat.S_IMODE((tmp_path / "secrets" / "users.acl.env").stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env.splitlines())
    assert values["REDIS_PASSWORD_ADMIN"] == "chosen-admin-pw"
    assert json.loads(values["REHABGATE_CLINICS"].strip("'"))["clinic-a"]["keys"] == [key]
    assert values["REHABGATE_ACL_FILE"] == str(out.resolve())
    text = out.read_text()
    assert "user clinic.clinic-a on #" in text
    for name, value in values.items():
        if name.startswith("REDIS_PASSWORD_"):
            assert value not in text
            assert value not in printed
    assert key not in printed
