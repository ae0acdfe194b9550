"""Issue 16: every rule does what its source says, and says it in plain words.

One realistic history per item, run through the engine under the shipped @1 file
(what it did) and the @2 file (what the source says). Clients train in Berlin
(UTC+01:00 in November): sessions in the evening, the check-in the next morning
at 07:00, a physio at noon. Day 0 is Monday 2026-11-02.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from rehabgate.schemas.inbound import CheckinLogged, ClinicianAction, SessionLogged
from rehabgate.schemas.outbound import CriterionResult, ProgressionEvaluated
from rehabgate.services.cli.protocol_tools import simulate
from rehabgate.services.gatekeeper.domain import Protocol
from rehabgate.services.gatekeeper.domain.criteria.progress import weekly_change
from rehabgate.services.gatekeeper.domain.decide import ProgressEvent, decide, replay
from rehabgate.services.gatekeeper.domain.errors import Rejected
from rehabgate.services.gatekeeper.domain.history import SessionRecord
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from rehabgate.services.notifier.messages import compose, needs_message
from tests.unit.builders import (
    a_checkin,
    a_clinician_action,
    a_session,
    a_session_record,
    a_state,
    an_enrolment,
)

PROTOCOLS = load_protocols()
BERLIN = timezone(timedelta(hours=1))
NEW_YORK = timezone(timedelta(hours=-5))
MONDAY = datetime(2026, 11, 2, tzinfo=BERLIN)


def local(day: int, hour: int, minute: int = 0, tz: timezone = BERLIN) -> datetime:
    return datetime(2026, 11, 2, hour, minute, tzinfo=tz) + timedelta(days=day)


def session(day: int, pain: int = 1, hour: int = 18, **fields: Any) -> SessionLogged:
    return a_session(occurred_at=local(day, hour), pain_during=pain, **fields)


def morning(day: int, pain: int = 1, swelling: bool = False) -> CheckinLogged:
    return a_checkin(
        occurred_at=local(day, 7), morning_pain=pain, morning_stiffness=pain, swelling=swelling
    )


def physio(day: int, action: str = "approve", **fields: Any) -> ClinicianAction:
    return a_clinician_action(
        occurred_at=local(day, 12), action=action, reason="seen in clinic today", **fields
    )


def run(
    ref: str, events: Sequence[ProgressEvent], start_stage: str | None = None
) -> list[ProgressionEvaluated]:
    protocol = PROTOCOLS[ref]
    enrolment = an_enrolment(
        protocol=ref, start_stage=start_stage, occurred_at=local(0, 8), start_date=MONDAY.date()
    )
    return simulate(protocol, enrolment, events)[1:]


def on(decisions: Sequence[ProgressionEvaluated], event: ProgressEvent) -> ProgressionEvaluated:
    (found,) = [d for d in decisions if d.cause_event_id == event.event_id]
    return found


def result(decision: ProgressionEvaluated, criterion_id: str) -> CriterionResult:
    (found,) = [c for c in decision.criteria if c.id == criterion_id]
    return found


def sets(*reps: int, rpe: float = 7, load: float = 60) -> list[dict[str, Any]]:
    return [
        {"reps": r, "load_kg": load, "rpe": rpe if n == len(reps) - 1 else rpe - 1}
        for n, r in enumerate(reps)
    ]


def lifts(*reps: int, rpe: float = 7) -> list[dict[str, Any]]:
    """Squat and deadlift, the same reps per set, the last set at `rpe`."""
    return [
        {"exercise_id": "back-squat", "sets": sets(*reps, rpe=rpe, load=60)},
        {"exercise_id": "deadlift", "sets": sets(*reps, rpe=rpe, load=80)},
    ]


# --- 1. 2-for-2 as its source states ---------------------------------------------------


def week_one(*reps: int) -> tuple[list[ProgressEvent], CheckinLogged]:
    """Tuesday and Friday sessions of week 1 (3 x 8 prescribed), each with its morning."""
    last = morning(5)
    return [session(1, exercises=lifts(*reps)), morning(2), session(4, exercises=lifts(*reps)),
            last], last  # fmt: skip


def test_two_for_two_sessions_exactly_on_target_do_not_advance() -> None:
    events, last = week_one(8, 8, 8)
    assert on(run("strength-block-6wk@1", events), last).outcome == "unlocked"  # the old gap

    decision = on(run("strength-block-6wk@2", events), last)
    assert (decision.outcome, decision.to_stage) == ("held", "week-1")
    two_for_two = result(decision, "two-for-two")
    assert two_for_two.status == "failed"
    assert "Back squat 8 of 8 (+0)" in two_for_two.explanation
    assert two_for_two.client_text == (
        "2 or more reps over your target on the last set, in 2 sessions in a row"
    )


def test_two_for_two_two_reps_over_on_the_last_set_twice_advances() -> None:
    events, last = week_one(8, 8, 10)
    decision = on(run("strength-block-6wk@2", events), last)
    assert (decision.outcome, decision.to_stage) == ("unlocked", "week-2")
    assert (
        "Back squat 10 of 8 (+2), Deadlift 10 of 8 (+2)"
        in result(decision, "two-for-two").explanation
    )


# --- 2. "too hard": a load reduction, messaged ----------------------------------------------


def test_an_rpe_of_10_holds_with_a_load_reduction_that_is_messaged_in_both_languages() -> None:
    hard = session(1, exercises=lifts(8, 8, 8, rpe=10))
    assert not any(
        c.kind == "too_hard" for c in on(run("strength-block-6wk@1", [hard]), hard).criteria
    )

    decision = on(run("strength-block-6wk@2", [hard]), hard)
    assert decision.outcome == "held"
    rule = result(decision, "effort-10")
    assert rule.status == "failed"
    assert "last set effort 10/10" in rule.explanation
    assert rule.client_text.endswith("lower the weight by 10% next session")
    assert needs_message(decision, held_digest=False)
    for locale, title in (("en", "Let's lighten the load a little"),
                          ("de", "Wir reduzieren das Gewicht etwas")):  # fmt: skip
        composed = compose([decision], local(1, 19), locale)
        assert composed is not None
        assert composed.message.title == title
        assert "10%" in composed.message.body


def test_missed_prescribed_reps_twice_in_a_row_asks_for_less_load() -> None:
    first = session(1, exercises=lifts(8, 8, 6), completed=False)
    second = session(4, exercises=lifts(8, 7, 6), completed=False)
    decisions = run("strength-block-6wk@2", [first, morning(2), second])
    assert result(on(decisions, first), "missed-reps-twice").status == "passed"
    rule = result(on(decisions, second), "missed-reps-twice")
    assert rule.status == "failed"
    assert "Back squat: 8, 7, 6 reps (3 x 8 prescribed)" in rule.explanation
    assert on(decisions, second).outcome == "held"


# --- 3. approvals count only after every other criterion passed ----------------------------


def ankle_return_to_sport(retest: int) -> tuple[list[ProgressEvent], SessionLogged]:
    """Stage 5 from day 0: Ankle-GO 6 on day 10, the physio approves on day 11,
    a retest on day 15 scores `retest`, then the next morning."""
    events: list[ProgressEvent] = []
    for day in range(1, 15, 2):
        metrics = {"ankle_go_score": 6.0} if day == 9 else {}
        events += [session(day, metrics=metrics), morning(day + 1)]
    events.append(physio(11))
    retested = session(15, metrics={"ankle_go_score": float(retest)})
    return [*events, retested, morning(16)], retested


def test_an_approval_given_while_ankle_go_failed_does_not_release_a_later_pass() -> None:
    events, retest = ankle_return_to_sport(9)
    old = run("lateral-ankle-sprain@1", events, "return-to-sport")
    assert on(old, retest).outcome == "completed"  # released by the earlier approval
    assert on(old, retest).decided_by == "rules"

    new = run("lateral-ankle-sprain@2", events, "return-to-sport")
    assert all(d.outcome != "completed" for d in new)
    release = result(new[-1], "physio-release")
    assert release.status == "failed"
    assert "given before the other exit criteria had passed" in release.explanation
    assert "ankle-go" in release.explanation

    approved = run("lateral-ankle-sprain@2", [*events, physio(16)], "return-to-sport")[-1]
    assert (approved.outcome, approved.decided_by) == ("completed", "clinician")


# --- 4. the 24-hour response against the stage baseline ------------------------------------


def test_a_morning_still_above_the_pre_flare_baseline_does_not_pass() -> None:
    events = [session(1), morning(2, pain=2), session(2), morning(3, pain=5),
              session(3), morning(4, pain=3)]  # fmt: skip
    checked = events[-1]
    old = result(on(run("achilles-tendinopathy@1", events), checked), "next-morning")
    assert old.status == "passed"  # 3 <= 5 and below yesterday's 5

    new = result(on(run("achilles-tendinopathy@2", events), checked), "next-morning")
    assert new.status == "failed"
    assert new.explanation == (
        "next-morning pain rising: 3/10 is above your 2/10 baseline at this stage (limit 5/10)"
    )


def test_the_failing_24_hour_line_says_rising_not_over_the_limit() -> None:
    events = [session(1), morning(2, pain=2), session(2), morning(3, pain=5)]
    failing = result(on(run("achilles-tendinopathy@1", events), events[-1]), "next-morning")
    assert failing.status == "failed"
    assert failing.explanation == (
        "next-morning pain rising: 5/10 is above 2/10 the morning before (limit 5/10)"
    )


# --- 5. completion checked against the prescription -----------------------------------------


ONE_SET = [
    {"exercise_id": e, "sets": [{"reps": r}]}
    for e, r in (("two-leg-heel-raise", 15), ("one-leg-heel-raise", 10),
                 ("seated-heel-raise", 10), ("eccentric-heel-raise", 10))
]  # fmt: skip


def test_a_session_marked_completed_with_one_set_of_three_does_not_count() -> None:
    events = [session(1, exercises=ONE_SET), morning(2)]
    old = result(on(run("achilles-tendinopathy@1", events), events[0]), "sessions")
    assert old.observed == 1

    new = result(on(run("achilles-tendinopathy@2", events), events[0]), "sessions")
    assert new.observed == 0
    assert "marked complete but short of the prescription" in new.explanation
    assert "One-leg heel raises on the floor: 1 of 3 sets (3 x 10 prescribed)" in new.explanation


# --- 6. weekly volumes on training weeks, the two-week rise as Nielsen measured it -----------


def four_weeks_of_running() -> list[ProgressEvent]:
    """Stage 5 runs on Tuesday, Thursday and Sunday: 200, 200, 240, 280 minutes a week."""
    events: list[ProgressEvent] = []
    for week, total in enumerate((200, 200, 240, 280)):
        for offset, share in ((1, 0.3), (3, 0.3), (6, 0.4)):
            day = 7 * week + offset
            minutes = round(total * share)
            events += [
                a_session(occurred_at=local(day, 9), pain_during=1, observations={"limp": False},
                          exercises=[{"exercise_id": "run", "sets": [{"reps": minutes}]}]),
                morning(day + 1),
            ]  # fmt: skip
    return events


def test_a_40_percent_rise_over_two_weeks_holds() -> None:
    events = four_weeks_of_running()
    last_run = events[-2]
    old = on(run("return-to-run-5k-10k@1", events, "build-10k"), last_run)
    assert result(old, "two-week-build").observed == 30.0  # 520 vs 400 minutes in 14 days
    assert result(old, "load-spike").status == "passed"

    new = on(run("return-to-run-5k-10k@2", events, "build-10k"), last_run)
    spike = result(new, "load-spike")
    assert (spike.status, spike.observed) == ("failed", 40.0)
    assert spike.explanation == (
        "week of 23 Nov so far: volume 280 vs 200 in the week of 9 Nov (+40%) (rule: above 30%)"
    )
    assert new.outcome == "held"


def test_training_weeks_follow_the_clients_own_clock() -> None:
    """A Sunday-evening run in New York is 01:00 Monday in UTC; it belongs to Sunday's week."""
    records = (
        a_session_record(occurred_at=local(6, 19, tz=NEW_YORK), volume=100.0),  # Sun 8 Nov
        a_session_record(occurred_at=local(13, 19, tz=NEW_YORK), volume=100.0),  # Sun 15 Nov
        a_session_record(occurred_at=local(20, 19, tz=NEW_YORK), volume=150.0),  # Sun 22 Nov
    )
    state = a_state(sessions=records, stage_entered_at=local(0, 0))
    change, detail = weekly_change(state, local(21, 7, tz=NEW_YORK), 2)
    assert change == 50.0
    assert detail.startswith("week of 16 Nov: volume 150 vs 100 in the week of 2 Nov")


def test_the_weekly_guard_does_not_flip_without_new_load() -> None:
    events = four_weeks_of_running()
    states = replay(PROTOCOLS["return-to-run-5k-10k@2"], an_enrolment(
        protocol="return-to-run-5k-10k@2", start_stage="build-10k", occurred_at=local(0, 8),
        start_date=MONDAY.date()), events[:-1])  # fmt: skip
    state = states[-1].state
    stage = PROTOCOLS["return-to-run-5k-10k@2"].stages[-1]
    (weekly,) = [c for c in stage.exit_criteria if c.id == "weekly-build"]
    now, later = local(27, 12), local(29, 8)  # Sunday noon, Tuesday morning (no new runs)
    assert weekly.evaluate(state, now).status == "failed"
    assert weekly.evaluate(state, later).status == "failed"


# --- 7. a 24-hour check on every final stage ------------------------------------------------


@pytest.mark.parametrize("ref", sorted(r for r in PROTOCOLS if r.endswith("@2")))
def test_every_final_stage_waits_for_the_next_morning(ref: str) -> None:
    final = PROTOCOLS[ref].stages[-1]
    assert any(c.kind == "next_morning_response" for c in final.exit_criteria)


def test_the_final_ankle_stage_no_longer_completes_before_the_next_morning() -> None:
    events: list[ProgressEvent] = []
    for day in range(1, 14, 2):
        events += [session(day), morning(day + 1)]
    events += [session(14, hour=10, metrics={"ankle_go_score": 9.0}), physio(14)]
    old = run("lateral-ankle-sprain@1", events, "return-to-sport")[-1]
    assert old.outcome == "completed"  # no morning after the 10:00 test session

    new = run("lateral-ankle-sprain@2", events, "return-to-sport")[-1]
    assert new.outcome == "held"
    assert result(new, "not-worse-next-day").status == "unknown"
    after = run("lateral-ankle-sprain@2", [*events, morning(15), physio(15)], "return-to-sport")
    assert after[-1].outcome == "completed"


# --- 8. phases as data ---------------------------------------------------------------------


def walk_run(phases: Sequence[str]) -> list[ProgressEvent]:
    events: list[ProgressEvent] = []
    for n, phase in enumerate(phases):
        day = 1 + 2 * n
        events += [session(day, phase=phase, observations={"limp": False}), morning(day + 1)]
    return events


def test_each_phase_twice_is_counted_per_phase() -> None:
    events = walk_run(["walk-run-1", "walk-run-2", "walk-run-2", "walk-run-3",
                       "walk-run-3", "walk-run-3"])  # fmt: skip
    old = run("return-to-run-5k-10k@1", events, "walk-run-early")
    assert old[-1].to_stage == "walk-run-late"  # six sessions, one of phase 1

    new = run("return-to-run-5k-10k@2", events, "walk-run-early")[-1]
    assert (new.outcome, new.to_stage) == ("held", "walk-run-early")
    phases = result(new, "each-phase-twice")
    assert phases.status == "failed"
    assert phases.explanation == (
        "sessions per phase: walk-run-1 1, walk-run-2 2, walk-run-3 3 (need 2 each)"
    )
    assert phases.client_text == "each phase done at least 2 times (still to do: phase 1: 1 of 2)"

    done = run("return-to-run-5k-10k@2", walk_run(["walk-run-1", "walk-run-1", "walk-run-2",
               "walk-run-2", "walk-run-3", "walk-run-3"]), "walk-run-early")  # fmt: skip
    assert done[-1].to_stage == "walk-run-late"


# --- 9. advance_override honours its target or is refused --------------------------------


def enrolled_at_stage_1() -> Any:
    protocol = PROTOCOLS["achilles-tendinopathy@2"]
    enrolment = an_enrolment(protocol=protocol.ref, occurred_at=local(0, 8),
                             start_date=MONDAY.date())  # fmt: skip
    return protocol, replay(protocol, enrolment, [])[-1].state


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("no-such-stage", "has no stage 'no-such-stage'"),
        ("start-loading", "is the current stage"),
    ],
)
def test_an_override_to_a_stage_it_cannot_reach_is_refused(target: str, why: str) -> None:
    protocol, state = enrolled_at_stage_1()
    with pytest.raises(Rejected, match=f"advance_override refused: .*{why}"):
        decide(protocol, state, physio(3, "advance_override", target_stage=target))


def test_an_override_two_stages_ahead_goes_there() -> None:
    protocol, state = enrolled_at_stage_1()
    target = protocol.stages[2].id
    decision = decide(protocol, state, physio(3, "advance_override", target_stage=target))
    assert decision.state.stage_id == target
    assert decision.evaluation is not None
    assert decision.evaluation.outcome == "unlocked"
    assert f"skipping {protocol.stages[1].name}" in decision.evaluation.summary


def test_an_override_back_to_an_earlier_stage_is_refused() -> None:
    protocol, state = enrolled_at_stage_1()
    moved = decide(protocol, state, physio(3, "advance_override")).state
    with pytest.raises(Rejected, match=r"is an earlier stage .*use regress"):
        decide(protocol, moved, physio(4, "advance_override", target_stage="start-loading"))


# --- 10. plain words ------------------------------------------------------------------------


def test_pain_during_is_said_in_numbers_not_a_python_list() -> None:
    flare = session(1, pain=8)
    decision = on(run("achilles-tendinopathy@1", [flare]), flare)
    texts = [c.explanation for c in decision.criteria] + [decision.summary]
    assert not any("[" in text for text in texts)
    assert result(decision, "severe-pain-during").explanation == (
        "pain during 8/10 in the latest session (rule: above 6/10)"
    )


def test_a_no_is_told_apart_from_not_reported() -> None:
    said_no = session(1, observations={"sudden_sharp_pain": False})
    silent = session(2)
    decisions = run("hamstring-strain@2", [said_no, morning(2), silent])
    no = result(on(decisions, said_no), "sudden-pain")
    missing = result(on(decisions, silent), "sudden-pain")
    assert (no.status, missing.status) == ("passed", "unknown")
    assert no.explanation.endswith("answered no in the latest session")
    assert missing.explanation.endswith("not reported in the latest session")
    assert "sudden_sharp_pain" not in no.explanation + missing.explanation
    squat = result(on(decisions, silent), "painless-single-leg-squat")
    assert squat.client_text == "no pain on a single-leg squat (not reported yet)"


@pytest.mark.parametrize("ref", sorted(PROTOCOLS))
def test_client_words_carry_no_codes_or_source_keys(ref: str) -> None:
    protocol: Protocol = PROTOCOLS[ref]
    events = [session(1, pain=8), morning(2, pain=6)]
    decisions = run(ref, events)
    for decision in decisions:
        for c in decision.criteria:
            assert "[" not in c.client_text, c
            assert "_" not in c.client_text, c
            assert not any(key in c.client_text for key in protocol.sources), c


def test_session_records_keep_phase_and_sets() -> None:
    record = SessionRecord.of(session(1, phase="walk-run-1", exercises=lifts(8, 8, 10)), "s")
    assert record.phase == "walk-run-1"
    assert [s.reps for s in record.exercises[0].sets] == [8, 8, 10]


# --- replay: what moving a stored client from @1 to @2 changes -----------------------------


def test_replay_lists_what_changes_for_a_client_moved_to_version_2() -> None:
    from rehabgate.services.cli.protocol_tools import differences

    events, _ = week_one(8, 8, 8)
    enrolment = an_enrolment(protocol="strength-block-6wk@1", occurred_at=local(0, 8),
                             start_date=MONDAY.date())  # fmt: skip
    current = simulate(PROTOCOLS["strength-block-6wk@1"], enrolment, events)
    moved = simulate(PROTOCOLS["strength-block-6wk@2"], enrolment, events)
    (changed,) = differences(current, moved)
    assert changed.startswith(
        "2026-11-07 07:00 checkin.logged: unlocked (week-2) -> held (week-1)"
    )
    assert "2 or more reps over your target" in changed
