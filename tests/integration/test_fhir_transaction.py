"""FHIR that imports (issue 18): `rehabgate export fhir CLIENT --bundle transaction`
writes conditional, idempotent requests, so importing the same export twice into a
server (tests/fhir_store.py: a test double with the Bundle's conditional semantics,
validating every resource with fhir.resources R4B) yields the same resources; and
an invalid Bundle is refused at export time."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rehabgate.services.cli.main import main
from rehabgate.services.gatekeeper.fhir_export import (
    export_bundle,
    transaction_bundle,
    validation_problems,
)
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from tests.audit_histories import stored_history
from tests.events import checkin, enrolment, session, unique_client
from tests.fhir_store import FhirStore

pytestmark = pytest.mark.integration
PROTOCOLS = load_protocols()


def export(redis_url: str, client: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{client}-{len(list(tmp_path.iterdir()))}.json"
    assert main(["export", "fhir", client, "--bundle", "transaction", "--out", str(out),
                 *extra]) == 0  # fmt: skip
    written: dict[str, Any] = json.loads(out.read_text())
    return written


def test_a_transaction_imported_twice_yields_the_same_resources(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    audit = stored_history(redis_url)  # the rich history: decisions, actions, a correction
    assert audit.state is not None
    client = audit.state.client_id
    first, second = export(redis_url, client, tmp_path), export(redis_url, client, tmp_path)
    assert first["type"] == "transaction"
    assert validation_problems(first) == []
    for entry in first["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] != "Provenance":  # R4 Provenance has no identifier
            assert resource["identifier"], resource["resourceType"]
            assert entry["request"]["method"] == "PUT"
            assert "?" in entry["request"]["url"]

    store = FhirStore()
    store.transaction(first)
    after_first = copy.deepcopy(store.resources)
    created = store.created
    assert created == len(first["entry"])
    store.transaction(second)
    assert store.created == created  # nothing created twice
    assert store.resources == after_first

    # Another client of the same clinic and protocol: its own Patient, CarePlan and
    # records; the clinic, the code system and the plan definition are shared.
    other = unique_client("fhir-tx")
    stored_history(redis_url, other, events=[enrolment(other), session(other, 0),
                                             checkin(other, 1)])  # fmt: skip
    store.transaction(export(redis_url, other, tmp_path))
    kinds = Counter(kind for kind, _ in store.resources)
    assert kinds["Organization"] == kinds["CodeSystem"] == kinds["PlanDefinition"] == 1
    assert kinds["Patient"] == kinds["CarePlan"] == 2


def test_collection_stays_for_archives(redis_url: str) -> None:
    client = unique_client("fhir-col")
    audit = stored_history(redis_url, client, events=[enrolment(client), session(client, 0)])
    assert audit.state is not None
    collection = export_bundle(audit.state, [e.entry for e in audit.entries],
                               PROTOCOLS[audit.state.protocol])  # fmt: skip
    assert collection["type"] == "collection"
    assert all("request" not in e for e in collection["entry"])
    assert validation_problems(collection) == []
    assert len(transaction_bundle(collection)["entry"]) == len(collection["entry"])


def test_an_invalid_bundle_is_refused_and_nothing_is_written(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = unique_client("fhir-bad")
    stored_history(redis_url, client, events=[enrolment(client), session(client, 0)])
    import rehabgate.services.cli.fhir_command as command

    real = command.transaction_bundle

    def broken(bundle: dict[str, Any], base: str) -> dict[str, Any]:
        out = real(bundle, base)
        out["entry"][0]["resource"]["active"] = "very"  # not a boolean
        return out

    monkeypatch.setattr(command, "transaction_bundle", broken)
    out = tmp_path / "bad.json"
    assert main(["export", "fhir", client, "--bundle", "transaction", "--out", str(out)]) == 1
    assert not out.exists()
    assert "is not valid FHIR R4B; nothing written" in capsys.readouterr().err
