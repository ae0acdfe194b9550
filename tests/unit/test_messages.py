"""Client messages: what each outcome says, from the real protocol's decisions;
escaping in the HTML part; per-clinic template overrides."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from rehabgate.schemas.inbound import ClientEnrolled
from rehabgate.schemas.outbound import ClientMessage, CriterionResult, ProgressionEvaluated
from rehabgate.services.gatekeeper.domain import enroll
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.notifier.messages import Composed, compose
from rehabgate.services.notifier.rendering import Renderer
from tests.events import enrolment

NOW = datetime(2026, 11, 20, 9, tzinfo=UTC)
PROTOCOL = load_protocols()["achilles-tendinopathy@1"]


def a_result(role: str, status: str, client_text: str) -> CriterionResult:
    return CriterionResult(
        id="r", kind="pain_during_above", role=role, status=status, observed=6,  # type: ignore[arg-type]
        threshold=5, explanation="x", client_text=client_text, source="clinic default",
    )  # fmt: skip


def a_decision(**changes: Any) -> ProgressionEvaluated:
    decision = enroll(PROTOCOL, None, ClientEnrolled.model_validate(enrolment("c-1")))
    assert decision.evaluation is not None
    return decision.evaluation.model_copy(update=changes)


def one(*decisions: ProgressionEvaluated, **options: Any) -> ClientMessage:
    composed = compose(decisions, NOW, **options)
    assert composed is not None
    return composed.message


def test_enrolment_welcomes_and_gives_the_first_prescription() -> None:
    message = one(a_decision())
    assert message.title == "Welcome to your rehab programme"
    assert "Stage 1: start loading (1 of 4)" in message.body
    assert "One-leg heel raises on the floor: 3 x 10, body weight, daily" in message.body


def test_unlock_says_why_and_what_changes() -> None:
    stage2 = PROTOCOL.stages[1]
    message = one(
        a_decision(from_stage="start-loading", to_stage=stage2.id, to_stage_name=stage2.name,
                   to_stage_number=2, prescription=stage2.prescription,
                   criteria=(a_result("exit", "passed", "3 sessions with pain at 3/10 or less"),)),
    )  # fmt: skip
    assert message.title == "You've unlocked Stage 2: start strengthening"
    assert "- 3 sessions with pain at 3/10 or less" in message.body
    assert "Quick-rebounding heel raises: 3 x 20" in message.body


def test_step_back_is_calm_and_names_the_first_triggered_rule() -> None:
    message = one(
        a_decision(outcome="regressed", from_stage="start-strengthening",
                   criteria=(a_result("step_back", "failed", "pain above 5/10 twice"),
                             a_result("step_back", "failed", "pain above 5/10 once"))),
    )  # fmt: skip
    assert "pain above 5/10 twice" in message.body
    assert "once" not in message.body
    assert "nothing to worry about" in message.body


def test_flag_tells_the_client_their_physio_will_be_in_touch() -> None:
    message = one(a_decision(outcome="flagged",
                             criteria=(a_result("safety", "failed", "new swelling"),)))  # fmt: skip
    assert message.title == "Your physio will be in touch"
    assert "You reported:\n- new swelling" in message.body
    assert "contact your clinic straight away" in message.body


def test_held_sends_nothing_unless_the_digest_is_on() -> None:
    assert compose([a_decision(outcome="held")], NOW) is None
    digest = one(a_decision(outcome="held"), held_digest=True)
    assert digest.outcome == "held"
    assert digest.title.startswith("Your progress on Stage 1")


def test_a_held_decision_is_dropped_when_a_later_one_supersedes_it() -> None:
    held, flagged = a_decision(outcome="held"), a_decision(outcome="flagged")
    message = one(held, flagged, held_digest=True)
    assert message.title == "Your physio will be in touch"
    assert message.decision_ids == (held.decision_id, flagged.decision_id)


def test_message_id_is_the_first_decision_id() -> None:
    first = a_decision(outcome="completed")
    second = a_decision(outcome="flagged")
    message = one(first, second)
    assert message.message_id == message.decision_id == first.decision_id
    assert message.decision_ids == (first.decision_id, second.decision_id)
    assert message.title == "Updates on your rehab programme"
    assert message.outcome == "flagged"  # where the client is now
    assert message.client_id == "c-1"


def test_html_part_escapes_every_value() -> None:
    hostile = '<script>alert(1)</script> & "quotes"'
    composed = compose([a_decision(outcome="flagged",
                                   criteria=(a_result("safety", "failed", hostile),))], NOW)  # fmt: skip
    assert isinstance(composed, Composed)
    assert "<script>" not in composed.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;quotes&#34;" in composed.html
    assert hostile in composed.message.body  # plain text stays as written


def test_a_clinic_overrides_one_template_and_keeps_the_rest(tmp_path: Path) -> None:
    override = tmp_path / "clinic-a" / "en"
    override.mkdir(parents=True)
    (override / "flagged.txt.j2").write_text(
        "Clinic A will call you\n\nWe saw: {{ reported | join(', ') }}. Call 555-0100 if worse.\n"
    )
    renderer = Renderer(tmp_path)
    flagged = a_decision(outcome="flagged", clinic_id="clinic-a",
                         criteria=(a_result("safety", "failed", "new swelling"),))  # fmt: skip

    mine = one(flagged, renderer=renderer)
    others = one(flagged.model_copy(update={"clinic_id": "clinic-b"}), renderer=renderer)
    welcome = one(a_decision(clinic_id="clinic-a"), renderer=renderer)

    assert (mine.title, mine.body) == ("Clinic A will call you",
                                       "We saw: new swelling. Call 555-0100 if worse.")  # fmt: skip
    assert others.title == "Your physio will be in touch"
    assert welcome.title == "Welcome to your rehab programme"


def test_a_clinic_can_add_a_locale_of_its_own(tmp_path: Path) -> None:
    french = tmp_path / "clinic-a" / "fr"
    french.mkdir(parents=True)
    (french / "completed.txt.j2").write_text("Programme terminé\n\nBravo !\n")
    renderer = Renderer(tmp_path)

    message = one(a_decision(outcome="completed", clinic_id="clinic-a"),
                  locale="fr", renderer=renderer)  # fmt: skip

    assert (message.locale, message.title, message.body) == ("fr", "Programme terminé", "Bravo !")
    assert renderer.locale_for("clinic-b", "fr") == "en"


def test_a_clinic_id_cannot_reach_outside_the_override_directory(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "completed.txt.j2").write_text("Escaped\n\nnot an override\n")
    message = one(a_decision(outcome="completed", clinic_id=".."),
                  renderer=Renderer(tmp_path / "sub"))  # fmt: skip
    assert message.title == "You've completed your programme"


def test_the_html_part_is_rendered_only_when_asked_for() -> None:
    decision = a_decision()
    with_html = compose([decision], NOW)
    without = compose([decision], NOW, with_html=False)
    assert with_html is not None
    assert without is not None
    assert without.message == with_html.message
    assert (without.html, with_html.html.startswith("<!doctype html>")) == ("", True)


def test_a_shipped_text_is_rendered_once_for_equal_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = Renderer()
    renders: list[str] = []
    render = renderer._text

    def counted(clinic_id: str, locale: str, name: str, context: Mapping[str, Any]) -> Any:
        renders.append(name)
        return render(clinic_id, locale, name, context)

    monkeypatch.setattr(renderer, "_text", counted)
    stage2 = PROTOCOL.stages[1]
    first = one(a_decision(), renderer=renderer)
    other_client = one(a_decision(client_id="c-2", decision_id=uuid4()), renderer=renderer)
    unlocked = one(a_decision(from_stage="start-loading", to_stage=stage2.id,
                              to_stage_name=stage2.name, to_stage_number=2,
                              prescription=stage2.prescription), renderer=renderer)  # fmt: skip

    assert renders == ["welcome", "unlocked"]
    assert (other_client.title, other_client.body) == (first.title, first.body)
    assert other_client.client_id == "c-2"
    assert unlocked.title == "You've unlocked Stage 2: start strengthening"


def test_an_edited_override_is_used_at_once(tmp_path: Path) -> None:
    override = tmp_path / "clinic-a" / "en" / "completed.txt.j2"
    override.parent.mkdir(parents=True)
    override.write_text("Well done\n\nfirst wording\n")
    renderer = Renderer(tmp_path)
    done = a_decision(outcome="completed", clinic_id="clinic-a")

    before = one(done, renderer=renderer)
    override.write_text("Well done\n\nsecond wording\n")
    later = override.stat().st_mtime + 10  # an edit the file system dates later
    os.utime(override, (later, later))
    after = one(done, renderer=renderer)

    assert (before.body, after.body) == ("first wording", "second wording")


# --- corrections after late entries (issue 14) -------------------------------------


def a_withdrawal(**changes: Any) -> ProgressionEvaluated:
    stage1 = PROTOCOL.stages[0]
    fields: dict[str, Any] = dict(
        outcome="held", from_stage=stage1.id, to_stage=stage1.id, to_stage_name=stage1.name,
        to_stage_number=1, prescription=stage1.prescription, supersedes=uuid4(),
        superseded_outcome="unlocked", corrected_after=uuid4(), notice="taken_back",
        criteria=(a_result("exit", "failed", "3 sessions with pain at 3/10 or less"),),
    )  # fmt: skip
    return a_decision(**{**fields, **changes})


def test_a_correction_that_takes_back_an_unlock_tells_the_client_plainly() -> None:
    message = one(a_withdrawal())

    assert message.title == "An update to your last progress message"
    assert "Some of your entries reached us late" in message.body
    assert "you are not ready to move on yet" in message.body
    assert "Stage 1: start loading (1 of 4)" in message.body
    assert "- 3 sessions with pain at 3/10 or less" in message.body
    assert "[" not in message.body


def test_a_correction_is_told_in_german_too() -> None:
    message = one(a_withdrawal(), locale="de")

    assert message.title == "Eine Korrektur zu Ihrer letzten Nachricht"
    assert "erst später bei uns angekommen" in message.body


def test_a_late_step_that_is_no_news_to_the_client_sends_nothing() -> None:
    """E.g. a stage the client was told of, reached a day earlier: on record, silent."""
    earlier = a_decision(outcome="unlocked", from_stage="start-loading", notice="silent")
    assert compose([a_withdrawal(notice="silent"), earlier], NOW) is None
