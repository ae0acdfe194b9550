"""The AsyncAPI documents in schemas/json/ are current and valid per the official
AsyncAPI parser (npm @asyncapi/parser, run when Node is present, as in CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rehabgate.schemas.streams import INBOUND, evaluated_stream
from rehabgate.services.cli.schema_files import SCHEMA_DIR

ROOT = Path(__file__).resolve().parents[2]
PARSER_DIR = ROOT / "build" / "asyncapi-parser"
DOCUMENTS = [SCHEMA_DIR / f"asyncapi-{s}.json" for s in ("gatekeeper", "notifier")]


def test_documents_name_the_streams_and_carry_the_payload_schemas() -> None:
    gatekeeper = json.loads(DOCUMENTS[0].read_text())
    addresses = {c["address"] for c in gatekeeper["channels"].values()}
    assert {INBOUND, evaluated_stream(0)} <= addresses
    payload = gatekeeper["components"]["messages"][f"{INBOUND}:OnInbound:SubscribeMessage"][
        "payload"
    ]
    assert {"$ref": "#/components/schemas/SessionLogged"} in payload["oneOf"]
    assert "SessionLogged" in gatekeeper["components"]["schemas"]


def test_documents_validate_with_the_official_asyncapi_parser() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed to run @asyncapi/parser"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        install = subprocess.run(
            [npm, "install", "--prefix", str(PARSER_DIR), "--no-audit", "--no-fund",
             "@asyncapi/parser@3"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert install.returncode == 0, install.stderr[-3000:]
    script = PARSER_DIR / "validate_asyncapi.mjs"
    shutil.copyfile(Path(__file__).with_name("validate_asyncapi.mjs"), script)

    run = subprocess.run(
        [node, str(script), *map(str, DOCUMENTS)], capture_output=True, text=True, timeout=120
    )

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count('"ok":true') == 2
