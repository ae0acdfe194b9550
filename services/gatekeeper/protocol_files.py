"""Load protocol YAML files at start-up, failing loudly on the first bad one.

A physio edits these files, so an error must say which file, where in it, and
what is wrong — never a stack trace, never a silently skipped protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from .domain.protocol import Protocol

SHIPPED_DIR = Path(__file__).parent / "protocols"


class ProtocolFileError(Exception):
    """A protocol file that cannot be used; the message names file, path and reason."""

    def __init__(self, file: Path, path: str, reason: str) -> None:
        super().__init__(f"{file}: {path}: {reason}")
        self.file, self.path, self.reason = file, path, reason


def load_protocol(file: Path) -> Protocol:
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        raise ProtocolFileError(file, where, f"not valid YAML: {exc}") from None
    except OSError as exc:
        raise ProtocolFileError(file, "(file)", f"cannot read: {exc.strerror}") from None
    if not isinstance(document, dict):
        raise ProtocolFileError(file, "(document)", "expected a mapping at the top level")
    try:
        protocol = Protocol.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(part) for part in error["loc"]) or "(document)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ProtocolFileError(file, path, error["msg"] + more) from None
    if file.stem != protocol.ref:
        raise ProtocolFileError(
            file, "id/version", f"file must be named {protocol.ref}.yaml to match its content"
        )
    return protocol


def load_protocols(directories: Iterable[Path] = ()) -> Mapping[str, Protocol]:
    """The shipped protocols plus those in `directories`, keyed by `id@version`."""
    catalog: dict[str, Protocol] = {}
    for directory in (SHIPPED_DIR, *directories):
        if not directory.is_dir():
            raise ProtocolFileError(directory, "(directory)", "not a directory")
        for file in sorted(directory.glob("*.yaml")):
            protocol = load_protocol(file)
            if protocol.ref in catalog:
                raise ProtocolFileError(file, "id/version", f"{protocol.ref} is defined twice")
            catalog[protocol.ref] = protocol
    return catalog
