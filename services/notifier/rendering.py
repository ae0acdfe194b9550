"""Jinja2 templates: one per outcome and locale, overridable per clinic.

Why templates rather than code: the wording of a client message is clinical
communication that clinics want to adapt (tone, language, their own phrases)
without a release. Each clinic may override any shipped template with a file
of the same name under `<template_dir>/<clinic_id>/<locale>/` (setting
`REHABGATE_TEMPLATE_DIR`); everything else falls back to the shipped ones.

Text templates put the title on their first line and the body after it, so an
override is one plain file. HTML (the e-mail part) is autoescaped: criteria
texts and prescriptions are data, never markup. A clinic's templates run in
Jinja's sandbox when overrides are configured, since override files come from
outside the code base; the shipped ones alone are part of the code base and
run unsandboxed and compiled once (the sandbox checks every attribute access,
and auto-reload every file's time stamp: together most of a message's cost).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

SHIPPED = Path(__file__).parent / "templates"
_SHIPPED_LOCALES = frozenset(p.name for p in SHIPPED.iterdir() if p.is_dir())
#: How many rendered texts of the shipped templates are remembered.
TEXT_CACHE = 4096
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
        self._environments: dict[str, Environment] = {}
        self._shipped = _environment(FileSystemLoader(SHIPPED), sandboxed=False)
        self._shipped_texts: dict[Hashable, tuple[str, str]] = {}

    def locale_for(self, clinic_id: str, wanted: str | None) -> str:
        """The best locale there are templates for: `de-AT`, then `de`, then the default."""
        candidates = [wanted, wanted.split("-")[0]] if wanted else []
        for locale in [*candidates, self.default_locale, "en"]:
            if locale and _SAFE_NAME.match(locale) and self._has_locale(clinic_id, locale):
                return locale
        return "en"

    def text(
        self,
        clinic_id: str,
        locale: str,
        name: str,
        context: Mapping[str, Any],
        key: Hashable | None = None,
    ) -> tuple[str, str]:
        """Render `<locale>/<name>.txt.j2` (the clinic's own first): returns (title, body).
        `key`: a value that determines `context` (equal keys, equal contexts); with
        one, what a shipped template says is remembered (up to `TEXT_CACHE` texts),
        since a stage's words repeat for every client who reaches it."""
        if key is None or self._override_dir(clinic_id) is not None:
            return self._text(clinic_id, locale, name, context)
        remembered = (locale, name, key)
        text = self._shipped_texts.get(remembered)
        if text is None:
            text = self._text(clinic_id, locale, name, context)
            if len(self._shipped_texts) >= TEXT_CACHE:
                del self._shipped_texts[next(iter(self._shipped_texts))]  # the oldest
            self._shipped_texts[remembered] = text
        return text

    def _text(
        self, clinic_id: str, locale: str, name: str, context: Mapping[str, Any]
    ) -> tuple[str, str]:
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
        if locale in _SHIPPED_LOCALES:
            return True
        override = self._override_dir(clinic_id)
        return override is not None and (override / locale).is_dir()

    def _override_dir(self, clinic_id: str) -> Path | None:
        if self._overrides is None or not _SAFE_NAME.match(clinic_id):
            return None
        return self._overrides / clinic_id

    def _env(self, clinic_id: str) -> Environment:
        override = self._override_dir(clinic_id)
        if override is None:
            return self._shipped
        env = self._environments.get(clinic_id)
        if env is None:
            loader = ChoiceLoader([FileSystemLoader(override), FileSystemLoader(SHIPPED)])
            env = self._environments[clinic_id] = _environment(loader, sandboxed=True)
        return env


def _environment(loader: BaseLoader, sandboxed: bool) -> Environment:
    """Overrides (sandboxed) are re-read when their files change; the shipped
    templates only change with a release, so they are compiled once."""
    env = (SandboxedEnvironment if sandboxed else Environment)(
        loader=loader,
        autoescape=lambda name: name is not None and name.endswith(".html.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=sandboxed,
    )
    env.filters["duration"] = duration
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
