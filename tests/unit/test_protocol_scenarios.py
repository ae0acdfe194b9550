"""Clinical scenarios for every shipped protocol, run through the protocol simulator.

For each protocol: a realistic good course (stage by stage, never more than one
stage per decision), a pain flare (hold, step back, flag), and a missing
next-morning check-in (held, waiting for the check-in, never unlocked).

Days are offsets from T0 (Monday 2026-11-02, UTC): sessions at 18:00, the
next-morning check-in at 07:00, a physio's approval at 12:00.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rehabgate.schemas.inbound import CheckinLogged, ClinicianAction, SessionLogged
from rehabgate.schemas.outbound import CriterionResult, ProgressionEvaluated
from rehabgate.services.cli.protocol_tools import simulate
from rehabgate.services.gatekeeper.domain import Protocol
from rehabgate.services.gatekeeper.domain.decide import ProgressEvent
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from tests.unit.builders import a_checkin, a_clinician_action, a_session, an_enrolment, at

PROTOCOLS = load_protocols()
ACHILLES = PROTOCOLS["achilles-tendinopathy@1"]
ANKLE = PROTOCOLS["lateral-ankle-sprain@1"]
HAMSTRING = PROTOCOLS["hamstring-strain@1"]
RUNNING = PROTOCOLS["return-to-run-5k-10k@1"]
STRENGTH = PROTOCOLS["strength-block-6wk@1"]

WAITING = "waiting for the next-morning check-in after the latest session"


# --- events ---------------------------------------------------------------------


def session(day: int, pain: int, **fields: Any) -> SessionLogged:
    """A completed session at 18:00 on `day`."""
    return a_session(occurred_at=at(days=day, hours=18), pain_during=pain, **fields)


def morning(day: int, pain: int = 1, swelling: bool = False) -> CheckinLogged:
    """The check-in at 07:00 on `day`: the morning after a session on `day - 1`."""
    return a_checkin(
        occurred_at=at(days=day, hours=7),
        morning_pain=pain,
        morning_stiffness=pain,
        swelling=swelling,
    )


def trained(day: int, pain: int, morning_pain: int = 1, **fields: Any) -> list[ProgressEvent]:
    """A session on `day` and the check-in the morning after."""
    return [session(day, pain, **fields), morning(day + 1, morning_pain)]


def approval(day: int) -> ClinicianAction:
    return a_clinician_action(
        occurred_at=at(days=day, hours=12), action="approve", reason="clinical review passed"
    )


def flat(days: Iterable[list[ProgressEvent]]) -> list[ProgressEvent]:
    return [event for day in days for event in day]


def runs(*minutes: int) -> list[dict[str, Any]]:
    """Running logged as the protocol asks: one set per run, reps = minutes of running."""
    return [{"exercise_id": "run", "sets": [{"reps": m} for m in minutes]}]


def lifts(
    rpe: float, squat_kg: float, deadlift_kg: float, sets: int = 3, reps: int = 5
) -> list[dict[str, Any]]:
    """Squat and deadlift sets; the last set of each at `rpe`, earlier sets one lower."""

    def logged(load: float) -> list[dict[str, Any]]:
        return [
            {"reps": reps, "load_kg": load, "rpe": rpe if n == sets - 1 else rpe - 1}
            for n in range(sets)
        ]

    return [
        {"exercise_id": "back-squat", "sets": logged(squat_kg)},
        {"exercise_id": "deadlift", "sets": logged(deadlift_kg)},
    ]


# --- running a history and reading the decisions -------------------------------------


def decisions_for(
    protocol: Protocol, events: Sequence[ProgressEvent], start_stage: str | None = None
) -> list[ProgressionEvaluated]:
    """Every decision after enrolment, checked to never move more than one stage."""
    enrolment = an_enrolment(protocol=protocol.ref, start_stage=start_stage)
    enrolled, *decisions = simulate(protocol, enrolment, events)
    assert enrolled.to_stage == (start_stage or protocol.stages[0].id)
    for decision in decisions:
        if decision.from_stage is not None and decision.to_stage is not None:
            step = protocol.stage_index(decision.to_stage) - protocol.stage_index(
                decision.from_stage
            )
            assert abs(step) <= 1, decision.summary
    return decisions


def unlocks(decisions: Sequence[ProgressionEvaluated]) -> list[tuple[Any, Any, Any]]:
    """(from stage, to stage, when) of every unlock, in order."""
    return [
        (d.from_stage, d.to_stage, d.occurred_at) for d in decisions if d.outcome == "unlocked"
    ]


def decision_on(
    decisions: Sequence[ProgressionEvaluated], event: ProgressEvent
) -> ProgressionEvaluated:
    (found,) = [d for d in decisions if d.cause_event_id == event.event_id]
    return found


def criterion(decision: ProgressionEvaluated, criterion_id: str, role: str) -> CriterionResult:
    (found,) = [c for c in decision.criteria if c.id == criterion_id and c.role == role]
    return found


def triggered_by(
    decisions: Sequence[ProgressionEvaluated], rule_id: str
) -> list[ProgressionEvaluated]:
    """The decisions in which the step-back or safety rule `rule_id` triggered."""
    return [
        d
        for d in decisions
        if any(c.id == rule_id and c.role != "exit" and c.status == "failed" for c in d.criteria)
    ]


def assert_triggered(decision: ProgressionEvaluated, rule_id: str, role: str) -> None:
    assert criterion(decision, rule_id, role).status == "failed", decision.summary


def assert_waiting_for_checkin(decision: ProgressionEvaluated, stage: str, check: str) -> None:
    """Held at `stage` with every exit criterion met except the 24-hour response."""
    assert (decision.outcome, decision.to_stage) == ("held", stage)
    # A yes/no safety question the session did not answer is unknown (never "no"),
    # and triggers nothing; only the exit criteria decide the hold.
    not_passed = {
        c.id: c.status for c in decision.criteria if c.status != "passed" and c.role == "exit"
    }
    assert not_passed == {check: "unknown"}
    assert criterion(decision, check, "exit").explanation == WAITING
    assert "waiting for tomorrow's check-in" in decision.summary


def assert_completed(decision: ProgressionEvaluated, stage: str, when: Any) -> None:
    assert (decision.outcome, decision.from_stage, decision.occurred_at) == (
        "completed",
        stage,
        when,
    )
    assert {c.status for c in decision.criteria if c.role == "exit"} == {"passed"}


# --- Achilles tendinopathy -------------------------------------------------------------

HEEL_RAISES = "single_leg_heel_raise_reps"


def achilles_day(
    day: int, pain: int = 3, morning_pain: int = 2, reps: int = 12
) -> list[ProgressEvent]:
    return trained(day, pain, morning_pain, metrics={HEEL_RAISES: reps})


def test_achilles_good_course_unlocks_each_stage_in_turn_and_completes():
    end_of_stage_3 = achilles_day(62)
    events = [
        *flat(achilles_day(d, reps=8 if d < 7 else 12) for d in range(14)),  # daily, stage 1
        *flat(achilles_day(d) for d in range(14, 62)),  # stages 2 and 3, daily
        *end_of_stage_3,
        approval(63),  # physio review
        *flat(achilles_day(d, pain=2, morning_pain=1) for d in range(63, 105, 2)),
        approval(105),  # physio release
    ]

    decisions = decisions_for(ACHILLES, events)

    assert unlocks(decisions) == [
        ("start-loading", "start-strengthening", at(days=14, hours=7)),
        ("start-strengthening", "heavy-loading", at(days=35, hours=7)),
        ("heavy-loading", "maintenance", at(days=63, hours=12)),
    ]
    awaiting_review = decision_on(decisions, end_of_stage_3[1])  # day 63, 07:00
    assert awaiting_review.outcome == "held"
    assert criterion(awaiting_review, "physio-review", "exit").status == "failed"
    assert_completed(decisions[-1], "maintenance", at(days=105, hours=12))


def test_achilles_flare_holds_then_steps_back_then_flags():
    settled = flat(achilles_day(d) for d in range(3))
    painful, painful_again, severe = session(3, 6), session(4, 6), session(5, 7)
    after_flag = morning(6)
    events = [*settled, painful, morning(4, 2), painful_again, morning(5, 2), severe, after_flag]

    decisions = decisions_for(ACHILLES, events, start_stage="start-strengthening")

    held = decision_on(decisions, painful)
    assert (held.outcome, held.to_stage) == ("held", "start-strengthening")
    assert_triggered(held, "pain-over-5", "step_back")
    stepped_back = decision_on(decisions, painful_again)
    assert (stepped_back.outcome, stepped_back.to_stage) == ("regressed", "start-loading")
    assert_triggered(stepped_back, "pain-over-5-twice", "step_back")
    flagged = decision_on(decisions, severe)
    assert (flagged.outcome, flagged.to_stage) == ("flagged", "start-loading")
    assert_triggered(flagged, "severe-pain-during", "safety")
    paused = decision_on(decisions, after_flag)
    assert paused.outcome == "held"
    assert "waiting for a clinician" in paused.summary
    assert unlocks(decisions) == []


def test_achilles_holds_a_qualifying_session_until_its_next_morning_checkin():
    # Ten single-leg heel raises first on day 14, the day the 14-day minimum is reached.
    course = flat(achilles_day(d, reps=8) for d in range(14))
    qualifying = session(14, 3, metrics={HEEL_RAISES: 10})

    decisions = decisions_for(ACHILLES, [*course, qualifying])

    assert_waiting_for_checkin(decisions[-1], "start-loading", "next-morning")
    assert unlocks(decisions) == []
    checkin = morning(15, 2)
    later = decisions_for(ACHILLES, [*course, qualifying, checkin])
    assert unlocks(later) == [("start-loading", "start-strengthening", checkin.occurred_at)]


# --- Lateral ankle sprain --------------------------------------------------------------


def ankle_day(
    day: int,
    pain: int,
    morning_pain: int,
    metrics: Mapping[str, float] | None = None,
    limp: bool = False,
    **observations: bool,
) -> list[ProgressEvent]:
    return trained(
        day,
        pain,
        morning_pain,
        metrics=dict(metrics or {}),
        observations={"limp": limp, **observations},
    )


LUNGE = {"wblt_cm_involved": 10.5, "wblt_cm_uninvolved": 11}
STRENGTH_95 = {"strength_n_involved": 95, "strength_n_uninvolved": 100}
STANCE_OK = {"single_leg_stance_points": 1}
HOP_94 = {"hop_distance_cm_involved": 150, "hop_distance_cm_uninvolved": 160}


def test_ankle_good_course_reaches_return_to_sport_after_ankle_go_and_release():
    first_ankle_go = session(46, 1, metrics={"ankle_go_score": 7})
    second_ankle_go = session(56, 1, metrics={"ankle_go_score": 12})
    stage_3_tests = {**STRENGTH_95, **STANCE_OK}
    events = [
        # stage 1: daily walking; limping for the first three days
        *flat(ankle_day(d, 3, 3, limp=d < 3) for d in range(7)),
        # stage 2: band work; the lunge reaches 90% of the other side on day 13
        *flat(ankle_day(d, 4 if d < 10 else 3, 2) for d in range(7, 13)),
        *ankle_day(13, 3, 2, metrics=LUNGE),
        # stage 3: strength and balance tested on day 20
        *flat(ankle_day(d, 3, 1) for d in range(14, 20)),
        *ankle_day(20, 3, 1, metrics=stage_3_tests, single_leg_stance_insecurity=False),
        # stage 4: run-walk and hops every other day; hop test on day 41
        *flat(ankle_day(d, 2, 1) for d in range(21, 41, 2)),
        *ankle_day(41, 2, 1, metrics=HOP_94),
        # stage 5: Ankle-GO 7 on day 46 (below 8), 12 on the retest on day 56
        *flat(ankle_day(d, 1, 1) for d in (42, 44)),
        first_ankle_go,
        morning(47),
        *flat(ankle_day(d, 1, 1) for d in (48, 50, 52, 54)),
        second_ankle_go,
        morning(57),
        approval(57),
    ]

    decisions = decisions_for(ANKLE, events)

    assert unlocks(decisions) == [
        ("protect-and-load", "motion-and-early-strength", at(days=7, hours=7)),
        ("motion-and-early-strength", "strength-and-balance", at(days=14, hours=7)),
        ("strength-and-balance", "run-hop-agility", at(days=21, hours=7)),
        ("run-hop-agility", "return-to-sport", at(days=42, hours=7)),
    ]
    below_8 = decision_on(decisions, first_ankle_go)
    assert below_8.outcome == "held"
    assert criterion(below_8, "ankle-go", "exit").status == "failed"
    before_release = decisions[-2]
    assert before_release.outcome == "held"
    assert criterion(before_release, "physio-release", "exit").status == "failed"
    assert_completed(decisions[-1], "return-to-sport", at(days=57, hours=12))


def test_ankle_flare_holds_on_swelling_and_pain_then_steps_back_then_flags_giving_way():
    swollen = morning(3, 2, swelling=True)
    painful, painful_again = session(3, 5), session(4, 5)
    gave_way = session(5, 3, observations={"giving_way": True})
    events = [
        *flat(ankle_day(d, 3, 2) for d in range(2)),
        session(2, 3),
        swollen,
        painful,
        morning(4, 2),
        painful_again,
        morning(5, 2),
        gave_way,
    ]

    decisions = decisions_for(ANKLE, events, start_stage="motion-and-early-strength")

    held_swelling = decision_on(decisions, swollen)
    assert (held_swelling.outcome, held_swelling.to_stage) == ("held", "motion-and-early-strength")
    assert_triggered(held_swelling, "more-swollen", "step_back")
    held_pain = decision_on(decisions, painful)
    assert held_pain.outcome == "held"
    assert_triggered(held_pain, "pain-over-4", "step_back")
    stepped_back = decision_on(decisions, painful_again)
    assert (stepped_back.outcome, stepped_back.to_stage) == ("regressed", "protect-and-load")
    assert_triggered(stepped_back, "pain-over-4-twice", "step_back")
    flagged = decision_on(decisions, gave_way)
    assert (flagged.outcome, flagged.to_stage) == ("flagged", "protect-and-load")
    assert_triggered(flagged, "giving-way", "safety")


def test_ankle_holds_stage_2_until_the_next_morning_checkin_arrives():
    # Stage 2 judges "not worse next session" by the next-morning check-in; the lunge
    # test first passes on day 7, the day the 7-day minimum is reached.
    course = flat(ankle_day(d, 3, 2) for d in range(7))
    qualifying = session(7, 3, metrics=LUNGE, observations={"limp": False})

    decisions = decisions_for(
        ANKLE, [*course, qualifying], start_stage="motion-and-early-strength"
    )

    assert_waiting_for_checkin(decisions[-1], "motion-and-early-strength", "not-worse-next-day")
    assert unlocks(decisions) == []
    checkin = morning(8, 2)
    later = decisions_for(
        ANKLE, [*course, qualifying, checkin], start_stage="motion-and-early-strength"
    )
    assert unlocks(later) == [
        ("motion-and-early-strength", "strength-and-balance", checkin.occurred_at)
    ]


# --- Hamstring strain ------------------------------------------------------------------


def hamstring_day(
    day: int, pain: int = 1, metrics: Mapping[str, float] | None = None, **seen: bool
) -> list[ProgressEvent]:
    return trained(day, pain, 1, metrics=dict(metrics or {}), observations=seen)


def stage_1_day(
    day: int, bike_min: float, squat_pain: bool, knee_deficit: bool
) -> list[ProgressEvent]:
    return hamstring_day(
        day,
        metrics={"bike_150w_painfree_min": bike_min},
        single_leg_squat_pain=squat_pain,
        knee_extension_deficit=knee_deficit,
    )


def speed(percent: float) -> dict[str, float]:
    return {"running_speed_percent": percent}


SLR_82 = {"slr_deg_involved": 70, "slr_deg_uninvolved": 85}
STRENGTH_92 = {"strength_n_involved": 92, "strength_n_uninvolved": 100}


def test_hamstring_good_course_extends_rehab_after_h_test_insecurity_then_returns_to_play():
    insecure = session(23, 1, metrics=STRENGTH_92, observations={"h_test_insecurity": True})
    events = [
        # stage 1: bike and single-leg squat become pain-free by day 5
        *flat(stage_1_day(d, bike_min=d, squat_pain=d < 5, knee_deficit=d < 3) for d in range(6)),
        # stage 2: walk-jog up to 70% of top speed on day 11; straight-leg raise 71% -> 82%
        *hamstring_day(6, metrics={**speed(40), "slr_deg_involved": 60, "slr_deg_uninvolved": 85}),
        *flat(hamstring_day(d, metrics=speed(40 + 6 * (d - 6))) for d in range(7, 11)),
        *hamstring_day(11, metrics={**speed(70), **SLR_82}),
        # stage 3: full speed and pain-free direction change on day 17
        *flat(
            hamstring_day(d, metrics=speed(75 + 5 * (d - 12)), direction_change_pain=True)
            for d in range(12, 17)
        ),
        *hamstring_day(17, metrics=speed(100), direction_change_pain=False),
        # stage 4: a light and an in-between football session
        *flat(hamstring_day(d) for d in (18, 20)),
        # stage 5: heavy training; H-test insecurity on day 23, secure a week later
        *hamstring_day(21),
        insecure,
        morning(24),
        *flat(hamstring_day(d) for d in (26, 28)),
        *hamstring_day(30, metrics=STRENGTH_92, h_test_insecurity=False),
        approval(31),
    ]

    decisions = decisions_for(HAMSTRING, events)

    assert unlocks(decisions) == [
        ("pain-free-movement", "running-and-strength", at(days=6, hours=7)),
        ("running-and-strength", "full-speed-running", at(days=12, hours=7)),
        ("full-speed-running", "on-field-light", at(days=18, hours=7)),
        ("on-field-light", "return-to-play", at(days=21, hours=7)),
    ]
    extended = decision_on(decisions, insecure)
    assert (extended.outcome, extended.to_stage) == ("held", "return-to-play")
    assert_triggered(extended, "h-test-insecurity", "step_back")
    assert criterion(decisions[-2], "h-test-secure", "exit").status == "passed"
    assert_completed(decisions[-1], "return-to-play", at(days=31, hours=12))


def test_hamstring_flare_holds_at_2_of_10_then_steps_back_then_flags_a_sudden_pain():
    twinge, twinge_again = session(2, 2), session(3, 3)
    pop = session(4, 5, observations={"sudden_sharp_pain": True})
    events = [
        *flat(hamstring_day(d) for d in range(2)),
        twinge,
        morning(3),
        twinge_again,
        morning(4),
        pop,
    ]

    decisions = decisions_for(HAMSTRING, events, start_stage="running-and-strength")

    held = decision_on(decisions, twinge)
    assert (held.outcome, held.to_stage) == ("held", "running-and-strength")
    assert_triggered(held, "pain-2-or-more", "step_back")
    stepped_back = decision_on(decisions, twinge_again)
    assert (stepped_back.outcome, stepped_back.to_stage) == ("regressed", "pain-free-movement")
    assert_triggered(stepped_back, "pain-2-or-more-twice", "step_back")
    flagged = decision_on(decisions, pop)
    assert (flagged.outcome, flagged.to_stage) == ("flagged", "pain-free-movement")
    assert_triggered(flagged, "sudden-pain", "safety")


def test_hamstring_holds_stage_1_until_the_next_morning_checkin_arrives():
    # The bike test first reaches 5 pain-free minutes on day 3, the stage's minimum.
    course = flat(
        stage_1_day(d, bike_min=3, squat_pain=False, knee_deficit=False) for d in range(3)
    )
    (qualifying, _) = stage_1_day(3, bike_min=5, squat_pain=False, knee_deficit=False)

    decisions = decisions_for(HAMSTRING, [*course, qualifying])

    assert_waiting_for_checkin(decisions[-1], "pain-free-movement", "next-morning")
    assert unlocks(decisions) == []
    checkin = morning(4)
    later = decisions_for(HAMSTRING, [*course, qualifying, checkin])
    assert unlocks(later) == [("pain-free-movement", "running-and-strength", checkin.occurred_at)]


# --- Return to running, 5K -> 10K ------------------------------------------------------


def run_day(
    day: int, minutes: int, pain: int = 1, long_run_km: float | None = None, **seen: bool
) -> list[ProgressEvent]:
    metrics = {} if long_run_km is None else {"long_run_km": long_run_km}
    return trained(
        day,
        pain,
        1,
        exercises=runs(minutes),
        metrics=metrics,
        observations={"limp": False, **seen},
    )


def walk_day(day: int, walk_minutes: int, screen_passed: int | None = None) -> list[ProgressEvent]:
    metrics: dict[str, float] = {"brisk_walk_minutes": walk_minutes}
    if screen_passed is not None:
        metrics["arc_screen_tests_passed"] = screen_passed
    return trained(day, 0, 0, metrics=metrics, observations={"limp": False})


def weeks(first_day: int, plan: Sequence[tuple[int, int, int, float]]) -> list[ProgressEvent]:
    """Three runs a week (Monday, Wednesday, Saturday): (easy, middle, long minutes, long km)."""
    return flat(
        day
        for week, (easy, middle, long, km) in enumerate(plan)
        for day in (
            run_day(first_day + 7 * week, easy),
            run_day(first_day + 7 * week + 2, middle),
            run_day(first_day + 7 * week + 5, long, long_run_km=km),
        )
    )


# (easy, intervals, long run minutes, long run km); the third week is an easier week
BUILD_TO_10K = [
    (26, 24, 38, 6),
    (27, 24, 45, 7),
    (25, 24, 38, 6),
    (28, 24, 50, 8),
    (29, 24, 57, 9),
    (30, 24, 65, 10),
]


def test_running_good_course_from_walk_run_to_10k_keeps_volume_guards():
    events = [
        # stage 1: brisk walking to 30 minutes, readiness screen passed on day 2
        *walk_day(0, 20),
        *walk_day(1, 25),
        *walk_day(2, 30, screen_passed=5),
        # stage 2: walk-run phases 1-3, every other day, each phase twice
        *flat(
            run_day(d, m) for d, m in zip(range(4, 15, 2), (12, 12, 14, 14, 16, 16), strict=True)
        ),
        # stage 3: walk-run phases 4-6, up to running the whole way
        *flat(
            run_day(d, m) for d, m in zip(range(16, 27, 2), (18, 18, 20, 20, 22, 22), strict=True)
        ),
        # stage 4: continuous running from Monday day 28, long run to 5 km in week 4
        *weeks(28, [(22, 22, 25, 3.5), (23, 23, 27, 4), (24, 24, 30, 4.5), (25, 25, 33, 5)]),
        # stage 5: easy, intervals and long run from Monday day 56; 10 km in week 6
        *weeks(56, BUILD_TO_10K),
        approval(97),
    ]

    decisions = decisions_for(RUNNING, events)

    assert unlocks(decisions) == [
        ("ready-to-run", "walk-run-early", at(days=2, hours=18)),
        ("walk-run-early", "walk-run-late", at(days=15, hours=7)),
        ("walk-run-late", "base-5k", at(days=27, hours=7)),
        ("base-5k", "build-10k", at(days=55, hours=7)),
    ]
    assert triggered_by(decisions, "load-spike") == []
    assert_completed(decisions[-1], "build-10k", at(days=97, hours=12))
    assert criterion(decisions[-1], "weekly-build", "exit").observed == 8.2  # 119 vs 110 min
    assert criterion(decisions[-1], "two-week-build", "exit").observed == 21.2  # 229 vs 189


def test_running_flare_holds_then_steps_back_then_flags_a_limp():
    sore, sore_again = session(2, 3, exercises=runs(18)), session(4, 4, exercises=runs(18))
    limping = session(6, 2, exercises=runs(12), observations={"limp": True})
    events = [*run_day(0, 18), sore, morning(3), sore_again, morning(5), limping]

    decisions = decisions_for(RUNNING, events, start_stage="walk-run-late")

    held = decision_on(decisions, sore)
    assert (held.outcome, held.to_stage) == ("held", "walk-run-late")
    assert_triggered(held, "pain-over-2", "step_back")
    stepped_back = decision_on(decisions, sore_again)
    assert (stepped_back.outcome, stepped_back.to_stage) == ("regressed", "walk-run-early")
    assert_triggered(stepped_back, "pain-over-2-twice", "step_back")
    flagged = decision_on(decisions, limping)
    assert (flagged.outcome, flagged.to_stage) == ("flagged", "walk-run-early")
    assert_triggered(flagged, "limp", "safety")


def test_running_build_holds_a_two_week_load_spike_above_30_percent():
    # Starts at stage 4 so that stage 5 has a full history to compare with.
    steady = weeks(0, [(30, 24, 40, 6)] * 5)  # 94 minutes a week for five weeks
    jump = weeks(35, [(50, 40, 70, 9)])  # 160 minutes in the sixth week
    events = [*steady, *jump]

    decisions = decisions_for(RUNNING, events, start_stage="base-5k")

    assert unlocks(decisions) == [("base-5k", "build-10k", at(days=24, hours=7))]
    spiked = triggered_by(decisions, "load-spike")
    assert [d.cause_event_id for d in spiked] == [jump[4].event_id]  # Saturday's long run
    assert (spiked[0].outcome, spiked[0].to_stage) == ("held", "build-10k")
    # last 14 days 94 + 160 = 254 minutes against 188 the 14 days before
    assert criterion(spiked[0], "load-spike", "step_back").observed == 35.1
    assert criterion(decision_on(decisions, jump[5]), "two-week-build", "exit").status == "failed"


def test_running_holds_a_walk_run_phase_until_the_next_morning_checkin_arrives():
    # Six walk-run sessions every other day from day 1: the sixth (day 11) is also the
    # first after the 11-day minimum, so only its 24-hour response is outstanding.
    course = flat(run_day(d, 12) for d in range(1, 10, 2))
    (qualifying, _) = run_day(11, 12)

    decisions = decisions_for(RUNNING, [*course, qualifying], start_stage="walk-run-early")

    assert_waiting_for_checkin(decisions[-1], "walk-run-early", "back-to-baseline")
    assert unlocks(decisions) == []
    checkin = morning(12)
    later = decisions_for(RUNNING, [*course, qualifying, checkin], start_stage="walk-run-early")
    assert unlocks(later) == [("walk-run-early", "walk-run-late", checkin.occurred_at)]


# --- Six-week strength block -----------------------------------------------------------


def lift_day(
    day: int, rpe: float, squat_kg: float, pain: int = 1, **fields: Any
) -> list[ProgressEvent]:
    sets, reps = fields.pop("sets", 3), fields.pop("reps", 5)
    exercises = lifts(rpe, squat_kg, squat_kg * 1.2, sets=sets, reps=reps)
    return trained(day, pain, 1, exercises=exercises, **fields)


def test_strength_block_advances_weekly_by_2_for_2_and_completes_after_deload_and_test():
    deload = session(35, 1, deload=True, exercises=lifts(6, 60, 72, sets=2, reps=3))
    deload_checkin = morning(36)
    top_single = lifts(8.5, 100, 120, sets=1, reps=1)
    test_day = session(
        38, 2, exercises=top_single, metrics={"squat_kg": 100, "body_weight_kg": 80}
    )
    events = [
        *lift_day(0, 7, 60, sets=3, reps=8),
        *lift_day(3, 7, 62.5, sets=3, reps=8),
        *lift_day(7, 7.5, 67.5, sets=3, reps=6),
        *lift_day(10, 8, 70, sets=3, reps=6),
        *lift_day(14, 8, 72.5, sets=4, reps=5),
        *lift_day(17, 8, 75, sets=4, reps=5),
        *lift_day(21, 8, 77.5, sets=4, reps=4),
        *lift_day(24, 7.5, 80, sets=4, reps=4),
        *lift_day(28, 8.5, 85, sets=3, reps=3),
        *lift_day(31, 9, 87.5, sets=3, reps=3),
        deload,
        deload_checkin,
        test_day,
        morning(39),
    ]

    decisions = decisions_for(STRENGTH, events)

    assert unlocks(decisions) == [
        ("week-1", "week-2", at(days=4, hours=7)),
        ("week-2", "week-3", at(days=11, hours=7)),
        ("week-3", "week-4", at(days=18, hours=7)),
        ("week-4", "week-5", at(days=25, hours=7)),
        ("week-5", "deload-and-test", at(days=32, hours=7)),
    ]
    after_deload = decision_on(decisions, deload_checkin)
    assert after_deload.outcome == "held"
    assert criterion(after_deload, "test-session", "exit").observed == 0  # deloads never count
    assert_completed(decisions[-1], "deload-and-test", at(days=39, hours=7))
    assert criterion(decisions[-1], "relative-squat", "exit").observed == 1.25


def test_strength_block_pain_holds_then_flags_and_the_physio_steps_back():
    sore, sore_again = session(3, 4, exercises=lifts(8, 75, 90)), session(7, 5)
    step_back = a_clinician_action(
        occurred_at=at(days=8, hours=12),
        action="regress",
        reason="back pain while lifting",
        target_stage="week-2",
    )
    events = [*lift_day(0, 8, 75, pain=2), sore, morning(4), sore_again, morning(8), step_back]

    decisions = decisions_for(STRENGTH, events, start_stage="week-3")

    held = decision_on(decisions, sore)
    assert (held.outcome, held.to_stage) == ("held", "week-3")
    assert_triggered(held, "pain-over-3", "step_back")
    flagged = decision_on(decisions, sore_again)
    assert (flagged.outcome, flagged.to_stage) == ("flagged", "week-3")
    assert_triggered(flagged, "pain-over-3-twice", "safety")
    assert decision_on(decisions, events[-2]).outcome == "held"  # paused for the physio
    regressed = decision_on(decisions, step_back)
    assert (regressed.outcome, regressed.to_stage, regressed.decided_by) == (
        "regressed",
        "week-2",
        "clinician",
    )


def test_strength_block_holds_a_2_for_2_week_until_the_next_morning_checkin_arrives():
    # Tuesday and Friday sessions: Friday's is the second in a row and on day 4 of the week.
    course = lift_day(1, 7, 60, sets=3, reps=8)
    qualifying = session(4, 1, exercises=lifts(7, 62.5, 75, sets=3, reps=8))

    decisions = decisions_for(STRENGTH, [*course, qualifying])

    assert_waiting_for_checkin(decisions[-1], "week-1", "next-morning")
    assert unlocks(decisions) == []
    checkin = morning(5)
    later = decisions_for(STRENGTH, [*course, qualifying, checkin])
    assert unlocks(later) == [("week-1", "week-2", checkin.occurred_at)]
