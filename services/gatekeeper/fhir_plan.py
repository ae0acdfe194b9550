"""A rehab protocol as a FHIR R4 PlanDefinition (part of the FHIR export).

Why a module of its own: the protocol maps without any client data, so a clinic
could publish its PlanDefinitions alone, and fhir_export.py stays about one
client. Stages become actions in order (`relatedAction` after-end of the one
before), each exit criterion a textual `stop` condition (its human-readable
description, and its exact definition as JSON from the protocol file), step-back
rules nested actions with `applicability` conditions, and the safety rules one
more action. Sources become citations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .domain.criteria import Kind
from .domain.protocol import Protocol, Stage

#: Where rehabgate's own canonical URLs, code systems and identifier systems live.
#: `.invalid` never resolves (RFC 2606): a clinic that publishes its protocols sets
#: its own base (`rehabgate export fhir --base URL`).
CANONICAL_BASE = "https://rehabgate.invalid/fhir"


def plan_url(protocol: Protocol, base: str = CANONICAL_BASE) -> str:
    """The canonical URL; `url|version` pins a version (CarePlan, GuidanceResponse)."""
    return f"{base}/PlanDefinition/{protocol.id}"


def plan_definition(p: Protocol, base: str, resource_id: str) -> dict[str, Any]:
    """The protocol: one action per stage, exit criteria as `stop` conditions."""
    actions = [_stage_action(p, i, stage) for i, stage in enumerate(p.stages)]
    if p.safety:
        actions.append(
            {
                "id": "safety",
                "title": "Safety: flag to the physio and pause progression",
                "condition": [_condition("applicability", r.when) for r in p.safety],
            }
        )
    return {
        "resourceType": "PlanDefinition",
        "id": resource_id,
        "url": plan_url(p, base),
        "version": str(p.version),
        "name": "".join(part.capitalize() for part in p.id.split("-")),
        "title": p.title,
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                    "code": "clinical-protocol",
                }
            ]
        },
        "status": "active",
        "description": p.summary.strip(),
        "usage": p.review_note.strip(),
        "relatedArtifact": [
            {"type": "citation", "label": key, "citation": text.strip()}
            for key, text in p.sources.items()
        ],
        "action": actions,
    }


def _stage_action(protocol: Protocol, index: int, stage: Stage) -> dict[str, Any]:
    action: dict[str, Any] = {
        "id": _action_id(stage.id),
        "prefix": f"Stage {index + 1}",
        "title": stage.name,
        "description": stage.prescription.summary,
        "textEquivalent": "\n".join(_prescribed(stage)),
        "condition": [_condition("stop", c) for c in stage.exit_criteria],
    }
    if index > 0:
        previous = _action_id(protocol.stages[index - 1].id)
        action["relatedAction"] = [{"actionId": previous, "relationship": "after-end"}]
    if stage.step_back:
        action["action"] = [
            {
                "title": f"Step back: {rule.action}"
                + (f" to {rule.to_stage}" if rule.to_stage else ""),
                "condition": [_condition("applicability", rule.when)],
            }
            for rule in stage.step_back
        ]
    return action


def _action_id(stage_id: str) -> str:
    """A stage slug as a FHIR id: '_' is not allowed there, '.' never occurs in slugs."""
    return stage_id.replace("_", ".")


def _condition(kind: str, rule: Kind) -> dict[str, Any]:
    """A criterion or trigger as a textual condition, with its exact definition as JSON."""
    spec = rule.model_dump(mode="json", exclude={"id", "kind", "source"})
    terms = ", ".join(f"{k} {v}" for k, v in spec.items() if v is not None)
    return {
        "kind": kind,
        "expression": {
            "description": f"{rule.id} ({rule.kind}): {terms}; source: {rule.source}",
            "language": "application/json",
            "expression": json.dumps(rule.model_dump(mode="json"), sort_keys=True),
        },
    }


def _prescribed(stage: Stage) -> Sequence[str]:
    lines = []
    for e in stage.prescription.exercises:
        dose = (
            f"{e.sets} x {e.reps}"
            if e.reps
            else f"{e.sets} x {e.hold_s} s hold"
            if e.hold_s
            else f"{e.sets} sets"
        )
        load = f", {e.load}" if e.load else ""
        lines.append(f"{e.name}: {dose}{load}, {e.frequency}")
    return [*lines, *stage.prescription.notes]
