"""Jinja2 templates: one per outcome and locale, overridable per clinic.

Why templates rather than code: the wording of a client message is clinical
communication that clinics want to adapt (tone, language, their own phrases)
without a release. Each clinic may override any shipped template with a file
of the same name under `<template_dir>/<clinic_id>/<locale>/` (setting
`REHABGATE_TEMPLATE_DIR`); everything else falls back to the shipped ones.

Text templates put the title on their first line and the body after it, so an
override is one plain file. HTML (the e-mail part) is autoescaped: criteria
texts and prescriptions are data, never markup. Templates run in Jinja's
sandbox, since override files come from outside the code base.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

SHIPPED = Path(__file__).parent / "templates"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Block:
    """A piece of an HTML body: a paragraph, a list or a (section) heading."""

    kind: str
    lines: tuple[str, ...]


class Renderer:
    def __init__(self, template_dir: Path | None = None, default_locale: str = "en") -> None:
        self._overrides = template_dir
        self.default_locale = default_locale
        self._environments: dict[str, SandboxedEnvironment] = {}

    def locale_for(self, clinic_id: str, wanted: str | None) -> str:
        """The best locale there are templates for: `de-AT`, then `de`, then the default."""
        candidates = [wanted, wanted.split("-")[0]] if wanted else []
        for locale in [*candidates, self.default_locale, "en"]:
            if locale and _SAFE_NAME.match(locale) and self._has_locale(clinic_id, locale):
                return locale
        return "en"

    def text(
        self, clinic_id: str, locale: str, name: str, context: Mapping[str, Any]
    ) -> tuple[str, str]:
        """Render `<locale>/<name>.txt.j2` (the clinic's own first): returns (title, body)."""
        template = self._env(clinic_id).select_template(self._fallbacks(locale, f"{name}.txt.j2"))
        raw = template.render(context)
        lines = [line.rstrip() for line in raw.strip().splitlines()]
        title = lines[0] if lines else ""
        body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines[1:])).strip()
        return title, body

    def html(self, clinic_id: str, locale: str, title: str, body: str) -> str:
        """The HTML e-mail part for a rendered text message."""
        template = self._env(clinic_id).select_template(self._fallbacks(locale, "email.html.j2"))
        return template.render(locale=locale, title=title, blocks=blocks_of(body)).strip() + "\n"

    def _fallbacks(self, locale: str, name: str) -> list[str]:
        """A locale a clinic added may lack some templates: those come from the
        default locale (better a message in another language than none)."""
        return list(dict.fromkeys(f"{loc}/{name}" for loc in (locale, self.default_locale, "en")))

    def _has_locale(self, clinic_id: str, locale: str) -> bool:
        if (SHIPPED / locale).is_dir():
            return True
        override = self._override_dir(clinic_id)
        return override is not None and (override / locale).is_dir()

    def _override_dir(self, clinic_id: str) -> Path | None:
        if self._overrides is None or not _SAFE_NAME.match(clinic_id):
            return None
        return self._overrides / clinic_id

    def _env(self, clinic_id: str) -> SandboxedEnvironment:
        env = self._environments.get(clinic_id)
        if env is None:
            override = self._override_dir(clinic_id)
            loaders = [FileSystemLoader(override)] if override is not None else []
            env = SandboxedEnvironment(
                loader=ChoiceLoader([*loaders, FileSystemLoader(SHIPPED)]),
                autoescape=lambda name: name is not None and name.endswith(".html.j2"),
                undefined=StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.filters["duration"] = duration
            self._environments[clinic_id] = env
        return env


def duration(seconds: int) -> str:
    """45 -> "45 s", 1800 -> "30 min", 90 -> "1 min 30 s" (the same in en and de)."""
    minutes, rest = divmod(int(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def blocks_of(body: str) -> list[Block]:
    """Split a plain-text body into paragraphs, `- ` lists and underlined headings."""
    blocks = []
    for chunk in re.split(r"\n\s*\n", body.strip()):
        lines = [line for line in chunk.splitlines() if line.strip()]
        while lines:
            if len(lines) >= 2 and lines[1] and set(lines[1]) == {"-"}:
                blocks.append(Block("heading", (lines[0],)))
                lines = lines[2:]
            elif lines[0].startswith("- "):
                count = next(
                    (i for i, line in enumerate(lines) if not line.startswith("- ")), len(lines)
                )
                blocks.append(Block("list", tuple(line[2:] for line in lines[:count])))
                lines = lines[count:]
            else:
                count = next(
                    (i for i, line in enumerate(lines) if line.startswith("- ")), len(lines)
                )
                blocks.append(Block("paragraph", tuple(lines[:count])))
                lines = lines[count:]
    return blocks
