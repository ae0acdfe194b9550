"""Issue 8: a client's history exported as a FHIR R4 Bundle validates with a
third-party FHIR model library and carries what a receiving EHR needs.

Histories are applied through the real use case on a real Redis and read back
as `rehabgate export fhir` reads them. `fhir.resources` (its R4B models: R4B is
R4 with technical corrections, and these resources are unchanged between them)
parses the whole Bundle: structure, data types, required elements, id patterns,
no unknown elements. It does not check coded values against their value sets,
so the required bindings used here are checked by the tests themselves.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from fhir.resources.R4B.bundle import Bundle

from rehabgate.schemas.outbound import ProgressionEvaluated
from rehabgate.services.cli.demo_clinic import demo_events
from rehabgate.services.cli.main import main
from rehabgate.services.common.keys import ClientKeys
from rehabgate.services.gatekeeper.audit.reading import ClientAudit
from rehabgate.services.gatekeeper.fhir_export import (
    LOCAL_CODES,
    LOINC,
    PAIN_NRS,
    export_bundle,
    local_system,
)
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from tests.audit_histories import stored_history
from tests.events import checkin, enrolment, event, session, unique_client

pytestmark = pytest.mark.integration
PROTOCOLS = load_protocols()

#: Required bindings (FHIR R4) of the coded elements the export fills.
REQUIRED_CODES = {
    ("Observation", "status"): {"registered", "preliminary", "final", "amended", "corrected",
                                "cancelled", "entered-in-error", "unknown"},
    ("CarePlan", "status"): {"draft", "active", "on-hold", "revoked", "completed",
                             "entered-in-error", "unknown"},
    ("CarePlan", "intent"): {"proposal", "plan", "order", "option"},
    ("GuidanceResponse", "status"): {"success", "data-requested", "data-required",
                                     "in-progress", "failure", "entered-in-error"},
    ("PlanDefinition", "status"): {"draft", "active", "retired", "unknown"},
    ("CodeSystem", "status"): {"draft", "active", "retired", "unknown"},
    ("CodeSystem", "content"): {"not-present", "example", "fragment", "complete", "supplement"},
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"},
}  # fmt: skip
ACTIVITY_STATUS = {"not-started", "scheduled", "in-progress", "on-hold", "completed",
                   "cancelled", "stopped", "unknown", "entered-in-error"}  # fmt: skip


def bundle_of(audit: ClientAudit) -> dict[str, Any]:
    assert audit.state is not None
    return export_bundle(
        audit.state, [e.entry for e in audit.entries], PROTOCOLS[audit.state.protocol]
    )


def resources(bundle: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    found = [e["resource"] for e in bundle["entry"]]
    return [r for r in found if kind is None or r["resourceType"] == kind]


def decisions(audit: ClientAudit) -> list[ProgressionEvaluated]:
    docs = [json.loads(e.entry) for e in audit.entries]
    return [ProgressionEvaluated.model_validate(d["decision"]) for d in docs if d["decision"]]


def references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for value in node.values() for r in references(value)]
    if isinstance(node, list):
        return [r for item in node for r in references(item)]
    return []


def assert_valid_fhir(bundle: dict[str, Any]) -> None:
    """Parses as an R4(B) Bundle; references resolve; required bindings hold."""
    Bundle.model_validate(bundle)
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert len(full_urls) == len(bundle["entry"])
    for resource in resources(bundle):
        contained = {f"#{c['id']}" for c in resource.get("contained", [])}
        for ref in references(resource):
            assert ref in full_urls or ref in contained, (resource["resourceType"], ref)
    for (kind, element), allowed in REQUIRED_CODES.items():
        targets = [bundle] if kind == "Bundle" else resources(bundle, kind)
        for resource in targets:
            assert resource[element] in allowed, (kind, element, resource[element])
    for plan in resources(bundle, "CarePlan"):
        assert {a["detail"]["status"] for a in plan["activity"]} <= ACTIVITY_STATUS


@pytest.fixture(scope="module")
def rich(redis_url: str) -> tuple[ClientAudit, dict[str, Any]]:
    """The audit tests' rich history: flag and approval, unlock, flare, override, hold,
    a corrected session and a late check-in."""
    audit = stored_history(redis_url)
    return audit, bundle_of(audit)


def test_rich_history_exports_a_valid_fhir_r4_bundle(
    rich: tuple[ClientAudit, dict[str, Any]],
) -> None:
    audit, bundle = rich

    assert_valid_fhir(bundle)
    kinds = Counter(r["resourceType"] for r in resources(bundle))
    assert kinds["PlanDefinition"] == kinds["CarePlan"] == kinds["Patient"] == 1
    assert kinds["GuidanceResponse"] == len(decisions(audit))
    assert kinds["Provenance"] == 3  # approve, advance_override, hold
    assert bundle["type"] == "collection"


def test_pain_is_loinc_72514_3_and_other_codes_are_in_the_included_code_system(
    rich: tuple[ClientAudit, dict[str, Any]],
) -> None:
    _audit, bundle = rich
    observations = resources(bundle, "Observation")
    pain = [o for o in observations if {"system": LOINC, "code": PAIN_NRS}.items()
            <= o["code"]["coding"][0].items()]  # fmt: skip
    sessions = [o for o in observations if o["code"]["coding"][0]["code"] == "training-session"]
    checkins = [
        o for o in observations if o["code"]["coding"][0]["code"] == "next-morning-checkin"
    ]

    assert len(pain) == len(sessions) + len(checkins)  # pain during and morning pain
    assert all(isinstance(p["valueInteger"], int) and 0 <= p["valueInteger"] <= 10 for p in pain)
    members = {m["reference"].removeprefix("urn:uuid:") for o in sessions + checkins
               for m in o["hasMember"]}  # fmt: skip
    assert members == {p["id"] for p in pain}
    [code_system] = resources(bundle, "CodeSystem")
    assert code_system["url"] == local_system()
    defined = {c["code"] for c in code_system["concept"]}
    assert defined == set(LOCAL_CODES)
    used = {c["code"] for c in _codings(bundle) if c["system"] == local_system()}
    assert used <= defined
    assert {"pain-during", "morning-pain", "morning-stiffness", "swelling"} <= used


def _codings(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node] if "system" in node and "code" in node else []
        return own + [c for value in node.values() for c in _codings(value)]
    if isinstance(node, list):
        return [c for item in node for c in _codings(item)]
    return []


def test_each_decision_is_a_guidance_response_with_every_criterion(
    rich: tuple[ClientAudit, dict[str, Any]],
) -> None:
    audit, bundle = rich
    by_id = {r["id"]: r for r in resources(bundle, "GuidanceResponse")}

    for decision in decisions(audit):
        guidance = by_id[str(decision.decision_id)]
        assert guidance["moduleCanonical"].endswith("/PlanDefinition/achilles-tendinopathy|1")
        assert guidance["requestIdentifier"]["value"] == f"urn:uuid:{decision.cause_event_id}"
        [parameters] = guidance["contained"]
        assert guidance["outputParameters"] == {"reference": f"#{parameters['id']}"}
        named = {p["name"]: p for p in parameters["parameter"] if p["name"] != "criterion"}
        assert named["outcome"]["valueCode"] == decision.outcome
        criteria = [_parts(p) for p in parameters["parameter"] if p["name"] == "criterion"]
        assert [
            (c["id"], c["status"], c.get("observed"), c.get("threshold")) for c in criteria
        ] == [(c.id, c.status, c.observed, c.threshold) for c in decision.criteria]


def _parts(parameter: dict[str, Any]) -> dict[str, Any]:
    def value(part: dict[str, Any]) -> Any:
        return next(v for k, v in part.items() if k.startswith("value"))

    return {part["name"]: value(part) for part in parameter["part"]}


def test_clinician_actions_are_provenance_with_clinician_id_and_reason(
    rich: tuple[ClientAudit, dict[str, Any]],
) -> None:
    _, bundle = rich
    guidance = {f"urn:uuid:{r['id']}": r for r in resources(bundle, "GuidanceResponse")}
    provenance = resources(bundle, "Provenance")

    assert [p["reason"][0]["text"] for p in provenance] == [
        "Swelling reviewed: minor, resume",
        "Flare settled, seen today",
        "Travelling for two weeks: pause progression",
    ]
    assert [p["activity"]["text"] for p in provenance] == ["approve", "advance_override", "hold"]
    for p in provenance:
        [agent] = p["agent"]
        assert agent["who"]["identifier"]["value"] == "physio-7"
        [target] = p["target"]
        params = guidance[target["reference"]]["contained"][0]["parameter"]
        assert {"name": "decided-by", "valueCode": "clinician"} in params


def test_plan_definition_and_care_plan_pin_the_protocol_version(
    rich: tuple[ClientAudit, dict[str, Any]],
) -> None:
    audit, bundle = rich
    protocol = PROTOCOLS["achilles-tendinopathy@1"]
    [plan] = resources(bundle, "PlanDefinition")
    [care_plan] = resources(bundle, "CarePlan")

    assert care_plan["instantiatesCanonical"] == [f"{plan['url']}|{plan['version']}"]
    assert plan["version"] == "1"
    stages = [a for a in plan["action"] if a["id"] != "safety"]
    assert [a["title"] for a in stages] == [s.name for s in protocol.stages]
    assert [len(a["condition"]) for a in stages] == [len(s.exit_criteria) for s in protocol.stages]
    assert (
        "min-days (days_at_stage): min_days 14"
        in stages[0]["condition"][0]["expression"]["description"]
    )
    assert {c["kind"] for a in stages for c in a["condition"]} == {"stop"}
    assert len(plan["relatedArtifact"]) == len(protocol.sources)
    assert audit.state is not None
    assert audit.state.status == "on_hold"
    assert care_plan["status"] == "on-hold"
    assert care_plan["period"]["start"] == audit.state.enrolment.start_date.isoformat()


def test_a_corrected_session_is_one_amended_observation(
    rich: tuple[ClientAudit, dict[str, Any]],
) -> None:
    _, bundle = rich
    s19 = [o for o in resources(bundle, "Observation")
           if {"system": "https://rehabgate.invalid/fhir/identifier/session-id", "value": "s19"}
           in o["identifier"]]  # fmt: skip

    assert [o["status"] for o in s19] == ["amended"]
    [pain] = [o for o in resources(bundle, "Observation")
              if f"urn:uuid:{o['id']}" == s19[0]["hasMember"][0]["reference"]]  # fmt: skip
    assert pain["valueInteger"] == 4  # the correction's value, not the first log's


def test_export_holds_pseudonymous_ids_only(redis_url: str) -> None:
    client = unique_client("pseudo")
    canary = "Jane.Canary@example.com"
    history = [
        enrolment(client),
        event("client.contact.updated", client, hours=1, channel="email", address=canary),
        session(client, 0, pain=3, pain_after=2, metrics={"single_leg_heel_raise_reps": 8}),
        checkin(client, 1, pain=2),
    ]
    audit = stored_history(redis_url, client, events=history)
    bundle = bundle_of(audit)

    assert_valid_fhir(bundle)
    text = json.dumps(bundle)
    assert canary.lower() not in text.lower()
    [patient] = resources(bundle, "Patient")
    assert set(patient) == {"resourceType", "id", "identifier", "managingOrganization"}
    assert patient["identifier"][0]["value"] == client
    assert bundle_of(audit) == bundle  # pure: the same history, the same Bundle


def test_every_demo_client_exports_a_valid_bundle(redis_url: str) -> None:
    run = uuid.uuid4().hex[:6]
    events = demo_events(run)
    clients = sorted({e["client_id"] for e in events})
    for client in clients:
        audit = stored_history(
            redis_url, client, events=[e for e in events if e["client_id"] == client]
        )
        bundle = bundle_of(audit)
        assert_valid_fhir(bundle)
        assert resources(bundle, "GuidanceResponse"), client
    assert len(clients) == 5


def test_cli_export_fhir_writes_the_bundle_and_refuses_a_broken_trail(
    redis_url: str,
    sync_redis: redis.Redis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    client = unique_client("export")
    stored_history(redis_url, client, events=[enrolment(client), session(client, 0),
                                              checkin(client, 1), session(client, 1)])  # fmt: skip
    out = tmp_path / "client.fhir.json"

    assert main(["export", "fhir", client, "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert_valid_fhir(written)
    assert written["timestamp"]
    assert main(["export", "fhir", client, "--base", "https://fhir.clinic-a.test/r"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert resources(printed, "CarePlan")[0]["instantiatesCanonical"] == [
        "https://fhir.clinic-a.test/r/PlanDefinition/achilles-tendinopathy|1"
    ]
    assert main(["export", "fhir", unique_client("nobody")]) == 2

    audit_key = ClientKeys.of(client, 1).audit
    second = sync_redis.xrange(audit_key)[1][0]
    sync_redis.xdel(audit_key, second)
    assert main(["export", "fhir", client, "--out", str(tmp_path / "x.json")]) == 1
    assert "audit verify" in capsys.readouterr().err
