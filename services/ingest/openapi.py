"""The ingest's OpenAPI 3.1 document, generated from the code: the routes of app.py
and the JSON Schema of the pydantic models below and of the inbound events
(schemas/inbound.py). `schemas/json/ingest-openapi.json` is this document; a test
fails when it is stale (`python -m rehabgate.services.ingest.openapi > FILE`)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import models_json_schema

from rehabgate.schemas.inbound import InboundEvent

REF = "#/components/schemas/{model}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignedEntry(_Model):
    """A signed event as the Redis entry carries it: the event JSON as a string (the
    signature is over its exact bytes), `timestamp` and `signature` (README, Security model)."""

    event: str = Field(description="The event's JSON, exactly as signed.")
    timestamp: int | str = Field(description="Unix seconds the signature was made at.")
    signature: str = Field(description="`v1,<base64 HMAC-SHA256>`, several space-separated.")


class AcceptedEvent(_Model):
    index: int = Field(description="Position in the posted array (0 for a single event).")
    event_id: str
    entry_id: str = Field(description="The stream entry id: the event's acceptance.")
    status: Literal["accepted", "duplicate"] = Field(
        description="duplicate: posted before with the same content; the same entry id."
    )
    status_url: str = Field(description="Where its fate is: GET this path.")


class Accepted(_Model):
    accepted: list[AcceptedEvent]


class RefusedEvent(_Model):
    index: int
    event_id: str | None = Field(description="The id the item claims, when it names one.")
    reason: str = Field(description="What to fix, in the words of the gatekeeper's intake.")


class Refused(_Model):
    error: Literal["events refused"]
    detail: str
    refused: list[RefusedEvent]


class Problem(_Model):
    error: str
    detail: str | None = None


class Decision(_Model):
    decision_id: str | None
    outcome: str | None
    from_stage: str | None
    to_stage: str | None


class Fate(_Model):
    event_id: str
    entry_id: str
    fate: Literal["pending", "deferred", "applied", "duplicate", "dead_lettered"]
    reason: str | None = Field(default=None, description="Why it was dead-lettered.")
    decision: Decision | None = Field(
        default=None, description="applied: the decision it caused, or null when none."
    )


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=ref)}}},
    }


def document() -> dict[str, Any]:
    _, models = models_json_schema(
        [(m, "serialization") for m in (SignedEntry, Accepted, Refused, Problem, Fate)],
        ref_template=REF,
    )
    components: dict[str, Any] = dict(models.get("$defs", {}))
    inbound = TypeAdapter(InboundEvent).json_schema(ref_template=REF)
    components.update(inbound.pop("$defs", {}))
    components["InboundEvent"] = inbound
    item = {"oneOf": [{"$ref": REF.format(model="InboundEvent")},
                      {"$ref": REF.format(model="SignedEntry")}]}  # fmt: skip
    unauthorized = _json(
        "Problem", "Any authentication failure, alike (WWW-Authenticate: Bearer)."
    )
    limited = _json("Problem", "Rate limited: this clinic's events per second are used up.")
    limited["headers"] = {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rehabgate ingest",
            "version": "1",
            "description": "Clinics post inbound events over HTTPS with a per-clinic API key "
            "(README, Publishing over HTTPS). Strict intake: the gatekeeper's own contract.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/events": {
                "post": {
                    "operationId": "postEvents",
                    "summary": "Publish one event or an array of them (all or nothing).",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        item,
                                        {"type": "array", "items": item, "minItems": 1},
                                    ]
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json("Accepted", "Every event accepted (or a duplicate)."),
                        "400": _json("Problem", "The body is not JSON, or empty."),
                        "401": unauthorized,
                        "413": _json("Problem", "Body or batch over its limit; not parsed."),
                        "422": _json("Refused", "Events refused, each with why; none written."),
                        "429": limited,
                    },
                }
            },
            "/v1/events/{event_id}": {
                "get": {
                    "operationId": "getEventFate",
                    "summary": "The fate of one of your clinic's events.",
                    "parameters": [
                        {
                            "name": "event_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                        }
                    ],
                    "responses": {
                        "200": _json("Fate", "Its fate."),
                        "401": unauthorized,
                        "404": _json("Problem", "Not an event id of this clinic."),
                    },
                }
            },
        },
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`rgk_...`, from `rehabgate ingest-key issue CLINIC`.",
                }
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
