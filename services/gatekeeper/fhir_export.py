"""One client as a FHIR R4 Bundle, for the clinic's EHR: a `transaction` an EHR
imports (conditional, idempotent requests: `transaction_bundle`), or a `collection`
for archives.

Why: clinics keep records in systems that speak FHIR, and a physio handing a
client over needs the plan, the logs and every decision with its reasons in a
form those systems import, not a rehabgate-specific dump. The mapping follows
the research notes (clinical-criteria.md §4):

- the protocol is a PlanDefinition (fhir_plan.py: one action per stage, the exit
  criteria as textual `stop` conditions, step-back and safety rules as actions);
- the enrolment is a CarePlan that pins `PlanDefinition|version`;
- a session is an Observation panel whose pain values are their own
  Observations coded LOINC 72514-3 (0-10 numeric rating); a check-in likewise;
  everything without a standard code uses `LOCAL_CODES` under `local_system()`;
- each decision is a GuidanceResponse whose contained Parameters carry every
  criterion's observed value, threshold and status, as decided at the time;
- each clinician action is a Provenance: the clinician (by pseudonymous id) as
  author, the reason as text, the decision it caused as target.

**Transactions that import once.** Each entry of a `transaction` Bundle is a
conditional update (`PUT Type?search`), which a FHIR server answers by creating the
resource when nothing matches and updating the one match otherwise, so importing
the same export twice (or two clients of one clinic) creates nothing twice. The
search is the resource's natural identity where it has one shared between clients
(`Organization?identifier=<clinic-id>`, `Patient?identifier=<client-id>`,
`CodeSystem?url=`, `PlanDefinition?url=&version=`) and otherwise its own identifier
`<base>/identifier/resource|<uuid>` (the deterministic resource id, added to every
such resource). R4's Provenance has no identifier element: it is a plain
`PUT Provenance/<uuid>` (update as create, with the same deterministic id). The
resources carry no `id` of their own there (the server assigns it) and reference
each other by their `urn:uuid:` fullUrls, which the server resolves.
`validation_problems` checks a Bundle against the FHIR R4B models (fhir.resources)
before it is written.

Pure: stored state, audit entries and protocol in, a JSON-ready dict out. No
clock and no I/O; resource ids are uuid5 of rehabgate ids, so exporting the same
history twice gives the same Bundle. Only pseudonymous ids leave: no names, and
the contact details (kept apart from health data) are not read at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid5

from rehabgate.schemas.inbound import (
    INBOUND_ADAPTER,
    CheckinLogged,
    ClientEnrolled,
    ClinicianAction,
    InboundEvent,
    SessionLogged,
    SetLog,
)
from rehabgate.schemas.outbound import CriterionResult, Observed, ProgressionEvaluated

from .audit.history import decision_label
from .domain.history import ClientState
from .domain.protocol import Protocol, Stage
from .fhir_plan import CANONICAL_BASE, plan_definition, plan_url

__all__ = [
    "CANONICAL_BASE",
    "LOCAL_CODES",
    "LOINC",
    "PAIN_NRS",
    "export_bundle",
    "local_system",
    "transaction_bundle",
    "validation_problems",
]

LOINC = "http://loinc.org"
PAIN_NRS = "72514-3"
PAIN_NRS_DISPLAY = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
_NAMESPACE = UUID("0b6f5e3c-2f6d-4c4e-9a7e-5d1f8a3b9c21")
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: rehabgate's local codes (the CodeSystem `local_system(base)`, included in each Bundle).
LOCAL_CODES = {
    "training-session": "Training session as logged (session.logged)",
    "next-morning-checkin": "Next-morning check-in (checkin.logged)",
    "pain-during": "Pain during exercise, 0-10 numeric rating",
    "pain-after": "Pain after exercise, 0-10 numeric rating",
    "morning-pain": "Pain the next morning, 0-10 numeric rating",
    "morning-stiffness": "Stiffness the next morning, 0-10 rating",
    "swelling": "Swelling reported",
    "session-completed": "All prescribed sets and reps were done",
    "deload": "Planned deload session (never counts toward progression)",
    "clinician-approve": "Clinician approved progression",
    "clinician-hold": "Clinician put progression on hold",
    "clinician-regress": "Clinician moved the client back a stage",
    "clinician-advance-override": "Clinician advanced the client despite the criteria",
}


def local_system(base: str = CANONICAL_BASE) -> str:
    return f"{base}/CodeSystem/rehabgate"


def export_bundle(
    state: ClientState,
    audit_entries: Iterable[str],
    protocol: Protocol,
    *,
    base: str = CANONICAL_BASE,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """The client's Bundle. `audit_entries`: each audit entry's stored JSON, in order."""
    build = _Builder(state, protocol, base)
    for raw in audit_entries:
        build.entry(json.loads(raw))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection"}
    if timestamp is not None:
        bundle["timestamp"] = timestamp.isoformat()
    bundle["entry"] = [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in build.resources()
    ]
    return bundle


def transaction_bundle(collection: dict[str, Any], base: str = CANONICAL_BASE) -> dict[str, Any]:
    """The same resources as a `transaction` of conditional updates (module docstring)."""
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
    if "timestamp" in collection:
        bundle["timestamp"] = collection["timestamp"]
    bundle["entry"] = [_conditional(e["resource"], base) for e in collection["entry"]]
    return bundle


def resource_identifier(base: str, resource_id: str) -> dict[str, str]:
    """The identifier a transaction's per-client resource carries, and is found by."""
    return {"system": f"{base}/identifier/resource", "value": resource_id}


def _conditional(resource: dict[str, Any], base: str) -> dict[str, Any]:
    kind, resource_id = resource["resourceType"], resource["id"]
    body = {k: v for k, v in resource.items() if k != "id"}
    entry: dict[str, Any] = {"fullUrl": f"urn:uuid:{resource_id}", "resource": body}
    if kind == "Provenance":  # no identifier element in R4: update as create, by its id
        entry["resource"] = resource
        entry["request"] = {"method": "PUT", "url": f"Provenance/{resource_id}"}
        return entry
    if kind in ("Organization", "Patient"):
        search = _by_identifier(resource["identifier"][0])
    elif kind == "CodeSystem":
        body["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": resource["url"]}]
        search = f"url={quote(resource['url'], safe='')}"
    elif kind == "PlanDefinition":
        canonical = f"{resource['url']}|{resource['version']}"
        body["identifier"] = [{"system": "urn:ietf:rfc:3986", "value": canonical}]
        search = f"url={quote(resource['url'], safe='')}&version={quote(resource['version'])}"
    else:
        own = resource_identifier(base, resource_id)
        body["identifier"] = [*resource.get("identifier", []), own]
        search = _by_identifier(own)
    entry["request"] = {"method": "PUT", "url": f"{kind}?{search}"}
    return entry


def _by_identifier(identifier: dict[str, str]) -> str:
    return "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe="")


def validation_problems(bundle: dict[str, Any]) -> list[str]:
    """Why `bundle` is not a valid FHIR R4B Bundle (fhir.resources), or [] when it is:
    the models' errors, fullUrls that repeat, references that resolve to nothing in
    the Bundle, and (transactions) entries without a request."""
    from fhir.resources.R4B.bundle import Bundle
    from pydantic import ValidationError

    problems: list[str] = []
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        problems += [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
    entries = bundle.get("entry", [])
    full_urls = [e.get("fullUrl") for e in entries]
    if len(set(full_urls)) != len(full_urls):
        problems.append("entry.fullUrl: repeated")
    for index, entry in enumerate(entries):
        resource = entry.get("resource", {})
        contained = {f"#{c.get('id')}" for c in resource.get("contained", [])}
        for ref in _references(resource):
            if ref not in full_urls and ref not in contained:
                problems.append(f"entry.{index}: reference {ref} resolves to nothing")
        if bundle.get("type") in ("transaction", "batch") and "request" not in entry:
            problems.append(f"entry.{index}: no request")
    return problems


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return own + [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


@dataclass
class _Builder:
    state: ClientState
    protocol: Protocol
    base: str

    def __post_init__(self) -> None:
        self.code_system = local_system(self.base)
        self.plan_url = plan_url(self.protocol, self.base)
        self.canonical = f"{self.plan_url}|{self.protocol.version}"
        self.clinic = self._ref("Organization", self.state.clinic_id)
        self.patient = self._ref("Patient", self.state.client_id)
        self.care_plan = self._ref("CarePlan", str(self.state.enrolment.event_id))
        self.observations: dict[str, dict[str, Any]] = {}  # by id: a re-sent session replaces
        self.records: list[dict[str, Any]] = []  # decisions and provenance, in order
        self.ended: datetime | None = None
        self.visited: set[str] = set()

    # -- references and small datatypes -------------------------------------------------

    def _uuid(self, *parts: str) -> str:
        return str(uuid5(_NAMESPACE, "|".join((self.state.client_id, *parts))))

    def _ref(self, kind: str, *parts: str) -> dict[str, str]:
        return {"reference": f"urn:uuid:{self._uuid(kind, *parts)}", "type": kind}

    def _id_of(self, ref: dict[str, str]) -> str:
        return ref["reference"].removeprefix("urn:uuid:")

    def _identifier(self, kind: str, value: str) -> dict[str, str]:
        return {"system": f"{self.base}/identifier/{kind}", "value": value}

    def _local(self, code: str) -> dict[str, Any]:
        return {"system": self.code_system, "code": code, "display": LOCAL_CODES[code]}

    # -- audit entries ------------------------------------------------------------------

    def entry(self, doc: dict[str, Any]) -> None:
        event = INBOUND_ADAPTER.validate_python(doc["event"])
        decision = (
            ProgressionEvaluated.model_validate(doc["decision"]) if doc["decision"] else None
        )
        self.visited.add(str(doc.get("stage_after")))
        if doc.get("status_after") in ("completed", "discharged") and self.ended is None:
            self.ended = event.occurred_at
        reason: dict[str, str] | None = None
        if isinstance(event, SessionLogged):
            reason = self._session(event)
        elif isinstance(event, CheckinLogged):
            reason = self._checkin(event)
        target = self.care_plan
        if decision is not None:
            target = self._guidance(decision, reason)
        if isinstance(event, ClinicianAction):
            self._provenance(event, target)

    def _observation(
        self, ref: dict[str, str], event: InboundEvent, code: dict[str, Any], category: str
    ) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": self._id_of(ref),
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{event.event_id}"}],
            "basedOn": [self.care_plan],
            "status": "final",
            "category": [{"coding": [{"system": _CATEGORY, "code": category}]}],
            "code": code,
            "subject": self.patient,
            "effectiveDateTime": event.occurred_at.isoformat(),
            "performer": [self.patient],
        }

    def _pain(self, owner: str, which: str, event: InboundEvent, value: int) -> dict[str, str]:
        ref = self._ref("Observation", owner, which)
        code = {
            "coding": [
                {"system": LOINC, "code": PAIN_NRS, "display": PAIN_NRS_DISPLAY},
                self._local(which),
            ],
            "text": LOCAL_CODES[which],
        }
        pain = self._observation(ref, event, code, "survey")
        self.observations[pain["id"]] = {**pain, "valueInteger": value}
        return ref

    def _session(self, event: SessionLogged) -> dict[str, str]:
        owner = f"session:{event.session_id}"
        ref = self._ref("Observation", owner)
        earlier = self.observations.pop(self._id_of(ref), None)
        for member in earlier["hasMember"] if earlier else ():
            del self.observations[self._id_of(member)]
        members = [self._pain(owner, "pain-during", event, event.pain_during)]
        if event.pain_after is not None:
            members.append(self._pain(owner, "pain-after", event, event.pain_after))
        components: list[dict[str, Any]] = [
            {
                "code": {"coding": [self._local("session-completed")]},
                "valueBoolean": event.completed,
            },
            {"code": {"coding": [self._local("deload")]}, "valueBoolean": event.deload},
        ]
        for exercise in event.exercises:
            components.append(
                {
                    "code": self._slug_code("exercise", exercise.exercise_id),
                    "valueString": "; ".join(_set_text(s) for s in exercise.sets),
                }
            )
        for metric, value in sorted(event.metrics.items()):
            components.append(
                {"code": self._slug_code("metric", metric), "valueQuantity": {"value": value}}
            )
        for name, seen in sorted(event.observations.items()):
            components.append(
                {"code": self._slug_code("clinical-observation", name), "valueBoolean": seen}
            )
        code = {"coding": [self._local("training-session")], "text": "Training session"}
        panel = self._observation(ref, event, code, "activity")
        panel["identifier"].append(self._identifier("session-id", event.session_id))
        panel.update(component=components, hasMember=members)
        if earlier is not None:  # a re-sent session corrects the earlier log
            panel["status"] = "amended"
            panel["note"] = [
                {
                    "text": "Corrected by a later log of the same session id; "
                    "the earlier log is kept in the rehabgate audit trail."
                }
            ]
        self.observations[panel["id"]] = panel
        return ref

    def _checkin(self, event: CheckinLogged) -> dict[str, str]:
        owner = f"checkin:{event.event_id}"
        ref = self._ref("Observation", owner)
        code = {"coding": [self._local("next-morning-checkin")], "text": "Next-morning check-in"}
        panel = self._observation(ref, event, code, "survey")
        panel["hasMember"] = [self._pain(owner, "morning-pain", event, event.morning_pain)]
        panel["component"] = [
            {
                "code": {"coding": [self._local("morning-stiffness")]},
                "valueInteger": event.morning_stiffness,
            },
            {"code": {"coding": [self._local("swelling")]}, "valueBoolean": event.swelling},
        ]
        self.observations[panel["id"]] = panel
        return ref

    def _slug_code(self, system: str, slug: str) -> dict[str, Any]:
        return {"coding": [{"system": f"{self.base}/CodeSystem/{system}", "code": slug}]}

    def _guidance(
        self, decision: ProgressionEvaluated, reason: dict[str, str] | None
    ) -> dict[str, str]:
        ref = {"reference": f"urn:uuid:{decision.decision_id}", "type": "GuidanceResponse"}
        parameters: list[dict[str, Any]] = [
            {"name": "outcome", "valueCode": decision.outcome},
            # What people read: a physio's approval is "approved", not "held".
            {"name": "outcome-label", "valueString": decision_label(decision)},
            {"name": "summary", "valueString": decision.summary},
            {"name": "decided-by", "valueCode": decision.decided_by},
        ]
        for name, value in (("from-stage", decision.from_stage), ("to-stage", decision.to_stage)):
            if value is not None:
                parameters.append({"name": name, "valueString": value})
        parameters += [_criterion(c) for c in decision.criteria]
        guidance: dict[str, Any] = {
            "resourceType": "GuidanceResponse",
            "id": str(decision.decision_id),
            "contained": [
                {"resourceType": "Parameters", "id": "criteria", "parameter": parameters}
            ],
            "requestIdentifier": {
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:uuid:{decision.cause_event_id}",
            },
            "identifier": [
                {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{decision.decision_id}"}
            ],
            "moduleCanonical": f"{self.plan_url}|{decision.protocol.split('@')[1]}",
            "status": "success",
            "subject": self.patient,
            "occurrenceDateTime": decision.occurred_at.isoformat(),
            "note": [{"text": decision.summary}],
            "outputParameters": {"reference": "#criteria"},
        }
        if reason is not None:
            guidance["reasonReference"] = [reason]
        self.records.append(guidance)
        return ref

    def _provenance(self, action: ClinicianAction, target: dict[str, str]) -> None:
        code = "clinician-" + action.action.replace("_", "-")
        self.records.append(
            {
                "resourceType": "Provenance",
                "id": self._uuid("Provenance", str(action.event_id)),
                "target": [target],
                "occurredDateTime": action.occurred_at.isoformat(),
                "recorded": action.occurred_at.isoformat(),
                "reason": [{"text": action.reason}],
                "activity": {"coding": [self._local(code)], "text": action.action},
                "agent": [
                    {
                        "type": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                    "code": "author",
                                }
                            ]
                        },
                        "who": {
                            "type": "Practitioner",
                            "identifier": self._identifier("clinician-id", action.clinician_id),
                        },
                        "onBehalfOf": self.clinic,
                    }
                ],
            }
        )

    # -- the fixed resources ------------------------------------------------------------

    def resources(self) -> list[dict[str, Any]]:
        return [
            self._organization(),
            self._patient(),
            self._code_system(),
            plan_definition(
                self.protocol, self.base, self._uuid("PlanDefinition", self.protocol.ref)
            ),
            self._care_plan(),
            *self.observations.values(),
            *self.records,
        ]

    def _organization(self) -> dict[str, Any]:
        return {
            "resourceType": "Organization",
            "id": self._id_of(self.clinic),
            "identifier": [self._identifier("clinic-id", self.state.clinic_id)],
            "active": True,
        }

    def _patient(self) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": self._id_of(self.patient),
            "identifier": [self._identifier("client-id", self.state.client_id)],
            "managingOrganization": self.clinic,
        }

    def _code_system(self) -> dict[str, Any]:
        return {
            "resourceType": "CodeSystem",
            "id": self._uuid("CodeSystem"),
            "url": self.code_system,
            "name": "RehabgateCodes",
            "title": "rehabgate local codes",
            "status": "active",
            "content": "complete",
            "caseSensitive": True,
            "concept": [{"code": c, "display": d} for c, d in LOCAL_CODES.items()],
        }

    def _care_plan(self) -> dict[str, Any]:
        enrolment: ClientEnrolled = self.state.enrolment
        status = {
            "active": "active",
            "flagged": "on-hold",
            "on_hold": "on-hold",
            "completed": "completed",
            "discharged": "revoked",
        }[self.state.status]
        period = {"start": enrolment.start_date.isoformat()}
        if self.ended is not None:
            period["end"] = self.ended.isoformat()
        current = self.protocol.stage_index(self.state.stage_id)
        return {
            "resourceType": "CarePlan",
            "id": self._id_of(self.care_plan),
            "identifier": [
                {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{enrolment.event_id}"}
            ],
            "instantiatesCanonical": [self.canonical],
            "status": status,
            "intent": "plan",
            "title": self.protocol.title,
            "description": f"Now at {self.protocol.stages[current].name} ({self.state.status})",
            "subject": self.patient,
            "period": period,
            "created": enrolment.occurred_at.isoformat(),
            "activity": [
                {
                    "detail": {
                        "status": self._activity_status(i, stage, current),
                        "description": f"{stage.name}: {stage.prescription.summary}",
                    }
                }
                for i, stage in enumerate(self.protocol.stages)
            ],
        }

    def _activity_status(self, index: int, stage: Stage, current: int) -> str:
        if index == current:
            return {
                "completed": "completed",
                "discharged": "stopped",
                "active": "in-progress",
            }.get(self.state.status, "on-hold")
        return "completed" if index < current and stage.id in self.visited else "not-started"


def _set_text(s: SetLog) -> str:
    parts = [f"{s.reps} reps" if s.reps is not None else ""]
    parts.append(f"{s.duration_s:g} s" if s.duration_s is not None else "")
    parts.append(f"@ {s.load_kg:g} kg" if s.load_kg is not None else "")
    parts.append(f"RPE {s.rpe:g}" if s.rpe is not None else "")
    return " ".join(p for p in parts if p) or "set"


def _value(name: str, value: Observed) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"name": name, "valueInteger": value}
    if isinstance(value, float):
        return {"name": name, "valueDecimal": value}
    return {"name": name, "valueString": str(value)}


def _criterion(result: CriterionResult) -> dict[str, Any]:
    """One criterion as a Parameters part: an absent `observed` means no data (unknown)."""
    parts: list[dict[str, Any]] = [
        {"name": "id", "valueString": result.id},
        {"name": "kind", "valueString": result.kind},
        {"name": "role", "valueCode": result.role},
        {"name": "status", "valueCode": result.status},
    ]
    for name, value in (("observed", result.observed), ("threshold", result.threshold)):
        if value is not None:
            parts.append(_value(name, value))
    for name, text in (("unit", result.unit), ("window", result.window)):
        if text is not None:
            parts.append({"name": name, "valueString": text})
    parts += [
        {"name": "explanation", "valueString": result.explanation},
        {"name": "source", "valueString": result.source},
    ]
    return {"name": "criterion", "part": parts}
