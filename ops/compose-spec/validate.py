"""Validate Compose files against the Compose Specification's JSON Schema
(compose-spec.json beside this file; where it comes from: README.md here).

    python3 ops/compose-spec/validate.py compose.yaml [more.yaml|-]...

`-` reads a file from standard input (e.g. `docker-compose config` output). Needs
PyYAML and jsonschema: Debian's docker-compose package brings python3-yaml and
python3-jsonschema, so /usr/bin/python3 has both wherever ops/check-compose.sh
ran. Prints one line per violation (file, path, message); exit 1 if any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from jsonschema import Draft201909Validator

SCHEMA = Path(__file__).resolve().with_name("compose-spec.json")


def violations(document: object) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    # The schema says draft 2019-09 in a spelling jsonschema does not look up
    # (http, trailing #): name the draft instead of letting it guess.
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    Draft201909Validator.check_schema(schema)
    validator = Draft201909Validator(schema)
    found = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        found.append(f"{where}: {error.message}")
    return found


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    failed = False
    for path in paths:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        name = "<stdin>" if path == "-" else path
        problems = violations(yaml.safe_load(text))
        for problem in problems:
            print(f"{name}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        if not problems:
            print(f"{name}: valid against the Compose Specification schema")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
