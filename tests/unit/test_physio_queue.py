"""Issue 17: the needs-attention queue at the top of /physio. Each rule alone, the
order of urgency, and nobody queued who is done. Pure: timelines built here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rehabgate.schemas.outbound import CriterionResult
from rehabgate.services.gatekeeper.audit.history import (
    CriterionRow,
    SessionFigures,
    Timeline,
    TimelineItem,
)
from rehabgate.services.gatekeeper.physio_web.overview import (
    ClientRow,
    QueueRules,
    attention,
    clinic_overview,
)
from rehabgate.services.gatekeeper.physio_web.views import listing, source, value

T0 = datetime(2026, 6, 1, 8, tzinfo=UTC)
RULES = QueueRules(stepped_back_days=7, inactive_days=5, held_long_factor=2)


def criterion(
    kind: str, role: str, status: str, explanation: str, threshold: Any = 1
) -> CriterionRow:
    return CriterionRow.of(CriterionResult(
        id=kind, kind=kind, role=role, status=status, observed=0, threshold=threshold,  # type: ignore[arg-type]
        explanation=explanation, source="silbernagel-2007", client_text=explanation,
    ))  # fmt: skip


def item(day: float, outcome: str | None = "held", **changes: Any) -> TimelineItem:
    base: dict[str, Any] = dict(
        seq=int(day * 10), entry_id=f"{int(day * 1000) + 1}-0", recorded_at=T0,
        occurred_at=T0 + timedelta(days=day), event_type="session.logged", event_id=f"e{day}",
        outcome=outcome, stage_before="s1", stage_after="s1", stage_after_name="Stage 1: start",
        stage_number=1, stage_count=3, status_after="active", protocol="p@1", summary="",
        decided_by="rules", clinician_id=None, clinician_action=None, clinician_reason=None,
        rules_verdict=None, criteria=(), session=None, checkin=None, service_version="t",
    )  # fmt: skip
    return TimelineItem(**{**base, **changes})


def session(day: float, pain: int) -> TimelineItem:
    figures = SessionFigures(
        session_id=f"s{day}", occurred_at=T0 + timedelta(days=day), stage_id="s1",
        pain_during=pain, pain_after=None, next_morning_pain=None, volume=1.0,
        completed=True, deload=False,
    )  # fmt: skip
    return item(day, session=figures)


def reasons(
    status: str, items: list[TimelineItem], now_day: float, since_day: float = 0
) -> list[str]:
    timeline = Timeline(client_id="c", clinic_id="k", protocol="p@1", items=tuple(items))
    last = max(i.occurred_at for i in items)
    found = attention(status, timeline, T0 + timedelta(days=since_day), last,
                      T0 + timedelta(days=now_day), RULES)  # fmt: skip
    return [a.reason for a in found]


def test_flagged_names_the_safety_rule_that_fired() -> None:
    flag = item(
        2,
        "flagged",
        criteria=(criterion("swelling", "safety", "failed", "new swelling reported"),),
    )
    timeline = Timeline(client_id="c", clinic_id="k", protocol="p@1", items=(flag,))
    (first,) = attention("flagged", timeline, T0, flag.occurred_at, flag.occurred_at, RULES)
    assert first.reason == "flagged"
    assert first.why.startswith("new swelling reported")


def test_a_recent_step_back_counts_an_old_one_does_not() -> None:
    back = item(10, "regressed", stage_before="s2")
    assert reasons("active", [back], now_day=12) == ["stepped_back"]
    assert "stepped_back" not in reasons("active", [back], now_day=30)


def test_waiting_only_on_a_physios_approval() -> None:
    exits = (
        criterion("sessions", "exit", "passed", "3 sessions"),
        criterion("clinician_approval", "exit", "unknown", "a physio's approval"),
    )
    assert reasons("active", [item(3, criteria=exits)], now_day=3) == ["awaiting_approval"]
    more = (*exits, criterion("days_at_stage", "exit", "failed", "14 days", 14))
    assert reasons("active", [item(3, criteria=more)], now_day=3) == []


def test_pain_rising_over_the_last_three_sessions() -> None:
    assert reasons("active", [session(1, 2), session(2, 3), session(3, 5)], now_day=3) == [
        "pain_rising"
    ]
    assert reasons("active", [session(1, 2), session(2, 4), session(3, 4)], now_day=3) == []


def test_held_long_against_the_stages_minimum_days() -> None:
    minimum = (criterion("days_at_stage", "exit", "failed", "14 days", 14),)
    assert reasons("active", [item(29, criteria=minimum)], now_day=29) == ["held_long"]
    assert reasons("active", [item(27, criteria=minimum)], now_day=27) == []


def test_no_activity_for_days() -> None:
    assert reasons("active", [item(1)], now_day=6) == ["inactive"]
    assert reasons("active", [item(1)], now_day=5.5) == []


def test_nobody_done_is_queued() -> None:
    for status in ("completed", "discharged"):
        assert reasons(status, [item(1, "completed")], now_day=60) == []


def test_the_queue_is_ordered_by_urgency() -> None:
    def row(client: str, reason: str) -> ClientRow:
        from rehabgate.services.gatekeeper.physio_web.overview import Attention

        return ClientRow(
            client_id=client, protocol="p@1", stage_id="s1", stage_name=None, stage_number=None,
            stage_count=None, status="active", at_stage_since=T0, last_event_at=T0,
            days_at_stage=1, holds_at_stage=0, last_outcome=None, last_summary=None,
            chain_ok=True, attention=(Attention(reason=reason, why="."),) if reason else (),
        )  # fmt: skip

    overview = clinic_overview("k", [
        row("a", "inactive"), row("b", "flagged"), row("c", ""), row("d", "awaiting_approval"),
        row("e", "stepped_back"),
    ])  # fmt: skip
    assert [c.client_id for c in overview.queue] == ["b", "e", "d", "a"]
    assert [c.client_id for c in overview.others] == ["c"]


def test_plain_words_for_values_and_sources() -> None:
    assert value([6, 6], "NRS 0-10") == "6 and 6 out of 10"
    assert listing([1, 2, 3]) == "1, 2 and 3"
    assert value(None) == "not known yet"
    assert value(True) == "yes"
    assert source("silbernagel-2007-phase1-inferred") == "Silbernagel 2007 (phase1), adapted"
