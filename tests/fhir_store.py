"""A FHIR server's transaction semantics, as a test double: conditional updates
(`PUT Type?search`: create when nothing matches, update the one match, refuse when
several match), updates by id (`PUT Type/id`: update as create), conditional creates
(`POST` with `ifNoneExist`), `urn:uuid:` references resolved to the ids assigned,
and every stored resource validated with the FHIR R4B models (fhir.resources)."""

from __future__ import annotations

import copy
import itertools
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle


class PreconditionFailed(AssertionError):
    """A conditional request matched more than one resource (HTTP 412)."""


class FhirStore:
    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self._ids = (str(n) for n in itertools.count(1))
        self.created = self.updated = 0

    def search(self, kind: str, query: str) -> list[str]:
        params = parse_qsl(query, strict_parsing=True)
        return [
            rid
            for (k, rid), resource in self.resources.items()
            if k == kind and all(_matches(resource, name, value) for name, value in params)
        ]

    def transaction(self, bundle: dict[str, Any]) -> list[str]:
        """Apply a transaction Bundle; the `Type/id` each entry ended as."""
        Bundle.model_validate(bundle)
        assert bundle["type"] == "transaction"
        resolved: dict[str, str] = {}
        plan: list[tuple[str, str, dict[str, Any] | None]] = []
        for entry in bundle["entry"]:
            request, resource = entry["request"], entry["resource"]
            kind, _, query = request["url"].partition("?")
            body: dict[str, Any] | None = resource
            if request["method"] == "PUT" and query:
                found = self.search(kind, query)
                if len(found) > 1:
                    raise PreconditionFailed(request["url"])
                rid = found[0] if found else next(self._ids)
                assert "id" not in resource or resource["id"] == rid
            elif request["method"] == "PUT":
                kind, rid = request["url"].split("/")
                assert resource.get("id") == rid
            elif request["method"] == "POST":
                found = (
                    self.search(kind, request["ifNoneExist"]) if "ifNoneExist" in request else []
                )
                if len(found) > 1:
                    raise PreconditionFailed(request["ifNoneExist"])
                rid, body = (found[0], None) if found else (next(self._ids), resource)
            else:
                raise AssertionError(f"unsupported method {request['method']}")
            assert kind == resource["resourceType"]
            resolved[entry["fullUrl"]] = f"{kind}/{rid}"
            plan.append((kind, rid, body))
        for kind, rid, body in plan:
            if body is None:
                continue
            stored = _resolve(copy.deepcopy(body), resolved)
            stored["id"] = rid
            get_fhir_model_class(kind).model_validate(stored)
            if (kind, rid) in self.resources:
                self.updated += 1
            else:
                self.created += 1
            self.resources[(kind, rid)] = stored
        return [f"{k}/{r}" for k, r, _ in plan]


def _matches(resource: dict[str, Any], name: str, value: str) -> bool:
    if name == "identifier":
        system, _, code = value.partition("|")
        return any(
            i.get("system") == system and i.get("value") == code
            for i in resource.get("identifier", [])
        )
    if name in ("url", "version"):
        return bool(resource.get(name) == value)
    if name == "_id":
        return bool(resource.get("id") == value)
    raise AssertionError(f"unsupported search parameter {name}")


def _resolve(node: Any, resolved: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _resolve(v, resolved) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref.startswith("urn:uuid:"):
            assert ref in resolved, f"unresolved reference {ref}"
            out["reference"] = resolved[ref]
        return out
    if isinstance(node, list):
        return [_resolve(item, resolved) for item in node]
    return node
