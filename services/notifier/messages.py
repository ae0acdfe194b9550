"""What to tell a client about one or several decisions. Pure: no I/O, no clock.

Each decision becomes a section in the words of its outcome's template: what
happened, why (its criteria in the client's words) and what the stage now asks
(the prescription). Step-backs and flags are written to reassure, not alarm.
Held decisions send nothing unless the held digest is on, except a hold that asks
the client to lower the load (a `too_hard` rule triggered): that one is always
sent, in the words of the `load_reduced` template; so is a correction that takes
back an unlock or completion (late entries changed the answer: `corrected`), and
so is a physio's review that holds (an approval that leaves other criteria open,
or a hold: `reviewed`; "your physio reviewed your progress"). A
held section is dropped when
a later decision in the same message supersedes it. Several
sections become one "updates" message (see coalescing.py for when).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rehabgate.schemas.outbound import ClientMessage, Prescription, ProgressionEvaluated

from .rendering import Renderer

_DEFAULT_RENDERER = Renderer()


@dataclass(frozen=True, slots=True)
class Composed:
    """A client message with its HTML rendering (for e-mail; '' unless asked for)."""

    message: ClientMessage
    html: str


def compose(
    decisions: Sequence[ProgressionEvaluated],
    created_at: datetime,
    locale: str | None = None,
    renderer: Renderer | None = None,
    held_digest: bool = False,
    with_html: bool = True,
) -> Composed | None:
    """The one message for `decisions` (one client's, in order), or None when none
    of them needs one. Its id is the first decision's id: the idempotency key.
    Only e-mail shows the HTML part, so other channels skip rendering it
    (`with_html=False`): it is nearly half a message's cost."""
    if not decisions:
        return None
    renderer = renderer or _DEFAULT_RENDERER
    first, last = decisions[0], decisions[-1]
    lang = renderer.locale_for(first.clinic_id, locale)
    shown = _shown(decisions, held_digest)
    if not shown:
        return None
    sections = tuple(_Section.of(d).render(renderer, first.clinic_id, lang) for d in shown)
    if len(sections) == 1:
        title, body = sections[0]
    else:
        title, body = renderer.text(
            first.clinic_id, lang, "coalesced",
            {"sections": [{"title": t, "body": b} for t, b in sections]}, key=sections,
        )  # fmt: skip
    message = ClientMessage(
        message_id=first.decision_id,
        decision_id=first.decision_id,
        decision_ids=tuple(d.decision_id for d in decisions),
        clinic_id=first.clinic_id,
        client_id=first.client_id,
        outcome=last.outcome,
        locale=lang,
        title=title,
        body=body,
        created_at=created_at,
    )
    html = renderer.html(first.clinic_id, lang, title, body) if with_html else ""
    return Composed(message, html)


#: Step-back rule kinds whose hold asks the client to change what they do (lower the
#: load): the client must hear it, digest or not.
ACTING_HOLDS = frozenset({"too_hard"})


def asks_to_act(decision: ProgressionEvaluated) -> bool:
    """A held decision that asks the client to lower the load."""
    return decision.outcome == "held" and any(
        c.role == "step_back" and c.status == "failed" and c.kind in ACTING_HOLDS
        for c in decision.criteria
    )


def withdraws(decision: ProgressionEvaluated) -> bool:
    """A late event's decision that takes back an unlock or a completion the client
    was told of: late entries changed the answer, and the client must hear it (the
    gatekeeper marks it: it alone knows where the client was told they stand)."""
    return decision.notice == "taken_back"


def reviewed(decision: ProgressionEvaluated) -> bool:
    """A physio's action that kept the client at their stage (an approval with other
    criteria still open, or a hold): the client hears that their physio looked."""
    return (
        decision.outcome == "held"
        and decision.decided_by == "clinician"
        and decision.cause_event_type == "clinician.action"
    )


def approved(decision: ProgressionEvaluated) -> bool:
    """The gatekeeper words a physio's hold "held by clinician"; any other held
    clinician decision was an approval."""
    return reviewed(decision) and not decision.summary.startswith("held by clinician")


def needs_message(decision: ProgressionEvaluated, held_digest: bool) -> bool:
    if decision.notice == "silent":  # a late event's step that is no news to the client
        return False
    return (
        decision.outcome != "held"
        or held_digest
        or asks_to_act(decision)
        or withdraws(decision)
        or reviewed(decision)
    )


def _shown(
    decisions: Sequence[ProgressionEvaluated], held_digest: bool
) -> list[ProgressionEvaluated]:
    """The decisions that get a section: a held one only if the digest is on and no
    later decision of the message supersedes it."""
    shown = []
    for i, decision in enumerate(decisions):
        last = i == len(decisions) - 1
        if decision.notice == "silent" or (
            decision.outcome == "held"
            and not withdraws(decision)
            and not reviewed(decision)
            and not (last and (held_digest or asks_to_act(decision)))
        ):
            continue
        shown.append(decision)
    return shown


@dataclass(frozen=True, slots=True)
class _Section:
    """What a decision's section says depends on these facts alone, so equal facts
    give equal texts and the renderer may remember them (they are its cache key)."""

    template: str
    outcome: str
    by_clinician: bool
    stage: tuple[str, int | None, int] | None  # name, number, count
    criteria: tuple[tuple[str, str, str], ...]  # role, status, client text
    prescription: Prescription | None
    #: For a hold that asks to lower the load: the rule's words (the first such rule).
    too_hard: str | None = None
    #: For a correction: the outcome it takes back.
    superseded: str | None = None
    #: For a physio's review: an approval (else a hold).
    approved: bool = False

    @classmethod
    def of(cls, decision: ProgressionEvaluated) -> _Section:
        welcome = decision.outcome == "unlocked" and decision.from_stage is None
        template: str = "welcome" if welcome else decision.outcome
        if asks_to_act(decision):
            template = "load_reduced"
        if withdraws(decision):
            template = "corrected"
        if reviewed(decision):
            template = "reviewed"
        stage = None
        if decision.to_stage_name is not None:
            stage = (decision.to_stage_name, decision.to_stage_number, decision.stage_count)
        return cls(
            template=template,
            outcome=decision.outcome,
            by_clinician=decision.decided_by == "clinician",
            stage=stage,
            criteria=tuple((c.role, c.status, c.client_text) for c in decision.criteria),
            prescription=decision.prescription,
            too_hard=next(
                (
                    c.client_text
                    for c in decision.criteria
                    if c.role == "step_back" and c.status == "failed" and c.kind in ACTING_HOLDS
                ),
                None,
            ),
            superseded=decision.superseded_outcome,
            approved=approved(decision),
        )

    def render(self, renderer: Renderer, clinic_id: str, locale: str) -> tuple[str, str]:
        return renderer.text(clinic_id, locale, self.template, self.context(), key=self)

    def context(self) -> dict[str, Any]:
        def texts(role: str, status: str) -> list[str]:
            return [text for r, s, text in self.criteria if r == role and s == status]

        step_backs = texts("step_back", "failed")
        stage = None
        if self.stage is not None:
            name, number, count = self.stage
            stage = {"name": name, "number": number, "count": count}
        return {
            "outcome": self.outcome,
            "by_clinician": self.by_clinician,
            "stage": stage,
            "met": texts("exit", "passed"),
            "still_to_do": [text for r, s, text in self.criteria if r == "exit" and s != "passed"],
            # The protocol lists step-back rules strongest first: the first that
            # triggered is the reason given.
            "step_back": step_backs[0] if step_backs else None,
            "reported": texts("safety", "failed"),
            "prescription": self.prescription,
            "too_hard": self.too_hard,
            "superseded": self.superseded,
            "approved": self.approved,
        }
