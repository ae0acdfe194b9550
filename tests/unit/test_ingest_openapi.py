"""The ingest's OpenAPI 3.1 document (issue 18) is generated from the code, and the
committed file is what the code generates now."""

from __future__ import annotations

import json
from pathlib import Path

from rehabgate.services.ingest.openapi import document, render

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "json" / "ingest-openapi.json"


def test_the_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == render(), (
        "run `python -m rehabgate.services.ingest.openapi > schemas/json/ingest-openapi.json`"
    )


def test_every_reference_resolves() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    text = json.dumps(doc)
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in schemas, name
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/v1/events", "/v1/events/{event_id}"}


def test_an_independent_validator_accepts_the_committed_document() -> None:
    from openapi_spec_validator import OpenAPIV31SpecValidator, validate

    spec = json.loads(COMMITTED.read_text())
    validate(spec, cls=OpenAPIV31SpecValidator)  # raises OpenAPIValidationError
    assert list(OpenAPIV31SpecValidator(spec).iter_errors()) == []
