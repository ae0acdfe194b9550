"""Issue 17: physios sign in as themselves. Credentials are hashed in a file that a
revoke or a re-issue takes effect on at once; sessions are signed, expire, and bind
the CSRF token; a single-sign-on proxy is believed only from its network or with
its shared secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from rehabgate.services.gatekeeper.physio_web.access import (
    ProxyIdentity,
    Sessions,
    session_cookie,
)
from rehabgate.services.gatekeeper.physio_web.credentials import (
    CredentialsError,
    CredentialsFile,
)


@pytest.fixture
def store(tmp_path: Path) -> CredentialsFile:
    return CredentialsFile(tmp_path / "secrets" / "physios.json")


def test_a_password_is_shown_once_and_kept_only_as_a_hash(store: CredentialsFile) -> None:
    password = store.issue("anna", "clinic-a")
    assert password
    assert store.path is not None
    text = store.path.read_text()
    assert password not in text
    assert json.loads(text)["physios"]["anna"]["password_hash"].startswith("scrypt$")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    physio = store.check("anna", password)
    assert physio is not None
    assert physio.clinic_id == "clinic-a"
    assert store.check("anna", password + "x") is None
    assert store.check("nobody", password) is None


def test_a_single_sign_on_physio_has_no_password(store: CredentialsFile) -> None:
    assert store.issue("ben", "clinic-b", sso_only=True) is None
    assert store.check("ben", "") is None
    physio = store.get("ben")
    assert physio is not None
    assert physio.sso_only


def test_a_damaged_file_is_named_not_guessed_at(tmp_path: Path) -> None:
    path = tmp_path / "physios.json"
    path.write_text("not json")
    with pytest.raises(CredentialsError, match=r"physios\.json"):
        CredentialsFile(path).physios()


def test_sessions_are_signed_expire_and_end_on_revoke_or_reissue(store: CredentialsFile) -> None:
    store.issue("anna", "clinic-a")
    sessions = Sessions(b"k" * 32, max_age_s=600, credentials=store)
    anna = store.get("anna")
    assert anna is not None
    value = sessions.issue(anna, now=1_000_000)
    who = sessions.identity(value, now=1_000_100)
    assert who is not None
    assert (who.physio_id, who.clinic_id) == ("anna", "clinic-a")
    assert sessions.identity(value, now=1_000_601) is None  # expired
    assert (
        sessions.identity(value[:-1] + ("A" if value[-1] != "A" else "B"), now=1_000_100) is None
    )
    other_key = Sessions(b"o" * 32, max_age_s=600, credentials=store)
    assert other_key.identity(value, now=1_000_100) is None
    store.issue("anna", "clinic-a")  # a new password: the old sessions end
    assert sessions.identity(value, now=1_000_100) is None
    fresh = sessions.issue(store.get("anna"), now=1_000_000)  # type: ignore[arg-type]
    assert store.revoke("anna")
    assert sessions.identity(fresh, now=1_000_100) is None


def test_the_cookie_is_secure_httponly_strict_and_the_csrf_token_bound_to_it(
    store: CredentialsFile,
) -> None:
    store.issue("anna", "clinic-a")
    sessions = Sessions(b"k" * 32, max_age_s=600, credentials=store)
    value = sessions.issue(store.get("anna"))  # type: ignore[arg-type]
    cookie = sessions.set_cookie(value)
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/physio"):
        assert flag in cookie
    assert session_cookie({"cookie": cookie.split(";")[0]}) == value
    token = sessions.csrf(value)
    assert sessions.csrf_ok(value, token)
    assert not sessions.csrf_ok(value, None)
    assert not sessions.csrf_ok(value, token[:-1])
    other = sessions.issue(store.get("anna"), now=1)  # type: ignore[arg-type]
    assert not sessions.csrf_ok(other, token)


def test_the_proxy_header_is_believed_only_from_the_proxy(store: CredentialsFile) -> None:
    store.issue("carla", "clinic-a", sso_only=True)
    by_network = ProxyIdentity("X-Forwarded-User", ["10.0.0.0/8"], None, store)
    headers = {"x-forwarded-user": "carla"}
    found = by_network.physio(headers, "10.1.2.3")
    assert found is not None
    assert found.clinic_id == "clinic-a"
    assert by_network.physio(headers, "192.0.2.7") is None
    assert by_network.physio({"x-forwarded-user": "nobody"}, "10.1.2.3") is None
    by_secret = ProxyIdentity("X-Forwarded-User", [], SecretStr("s3cret"), store)
    assert by_secret.physio({**headers, "x-rehabgate-proxy-secret": "s3cret"}, "192.0.2.7")
    assert by_secret.physio({**headers, "x-rehabgate-proxy-secret": "wrong"}, "192.0.2.7") is None
    off = ProxyIdentity(None, ["0.0.0.0/0"], None, store)
    assert off.physio(headers, "10.1.2.3") is None
