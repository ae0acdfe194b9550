"""Criterion and rule kinds, evaluated directly against a ClientState; Protocol validation."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from rehabgate.services.gatekeeper.domain.criteria import (
    ClinicianApproval,
    DaysAtStage,
    MetricAtLeast,
    MorningPainAbove,
    MorningPainRising,
    NextMorningResponse,
    PainDuringAbove,
    PainDuringMax,
    SessionsCompleted,
    SwellingReported,
)
from rehabgate.services.gatekeeper.domain.protocol import Protocol
from rehabgate.services.gatekeeper.protocol_files import load_protocols
from tests.unit.builders import (
    OTHER_STAGE,
    T0,
    a_checkin_record,
    a_session_record,
    a_state,
    an_approval,
    at,
    sessions_on_days,
)

NOW = at(days=30)
SRC = "clinic default"

# --- exit criteria -----------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "min_days", "status", "observed"),
    [
        (at(days=13, hours=23), 14, "failed", 13),
        (at(days=14), 14, "passed", 14),
        (at(days=14, hours=23), 14, "passed", 14),
        (at(days=15), 14, "passed", 15),
        (at(hours=5), 0, "passed", 0),
        (at(hours=5), 1, "failed", 0),
    ],
    ids=["day-13-fails", "day-14-passes", "late-day-14-passes", "day-15-passes", "zero", "one"],
)
def test_days_at_stage_counts_calendar_days_since_entering(now, min_days, status, observed):
    result = DaysAtStage(id="min-days", min_days=min_days, source=SRC).evaluate(a_state(), now)

    assert (result.status, result.observed, result.threshold) == (status, observed, min_days)
    assert result.role == "exit"
    assert result.unit == "days"


def test_days_at_stage_depends_on_the_instant_not_on_its_utc_offset():
    criterion = DaysAtStage(id="min-days", min_days=14, source=SRC)
    now_utc = at(days=14, hours=3)
    now_new_york = now_utc.astimezone(timezone(timedelta(hours=-5)))
    assert now_utc == now_new_york

    in_utc = criterion.evaluate(a_state(), now_utc)
    in_new_york = criterion.evaluate(a_state(), now_new_york)

    assert (in_new_york.status, in_new_york.observed) == (in_utc.status, in_utc.observed)


# (completed, deload) per session, oldest first
@pytest.mark.parametrize(
    ("sessions", "status", "observed"),
    [
        ([], "failed", 0),
        ([(True, False)] * 2, "failed", 2),
        ([(True, False)] * 3, "passed", 3),
        ([(True, False)] * 4, "passed", 4),
        ([(True, False)] * 2 + [(False, False)], "failed", 2),
        ([(True, False)] * 2 + [(True, True)], "failed", 2),
        ([(True, False)] * 2 + [(False, True)], "failed", 2),
        ([(False, False)] * 5 + [(True, True)] * 5, "failed", 0),
        ([(True, True), (False, False), (True, False), (True, False), (True, False)], "passed", 3),
    ],
    ids=[
        "none",
        "two-of-three",
        "exactly-three",
        "four",
        "incomplete-does-not-count",
        "deload-does-not-count",
        "incomplete-deload-does-not-count",
        "only-incomplete-and-deload",
        "three-among-others",
    ],
)
def test_sessions_completed_counts_only_completed_non_deload_sessions(sessions, status, observed):
    state = a_state(
        sessions=tuple(
            a_session_record(occurred_at=at(days=day, hours=18), completed=done, deload=deload)
            for day, (done, deload) in enumerate(sessions)
        )
    )

    result = SessionsCompleted(id="sessions", min_sessions=3, source=SRC).evaluate(state, NOW)

    assert (result.status, result.observed, result.threshold) == (status, observed, 3)


def test_sessions_completed_ignores_sessions_from_another_stage_or_before_entering():
    state = a_state(
        stage_entered_at=at(days=10),
        sessions=(
            *sessions_on_days([3, 3, 3]),  # days 0-2: before entering
            a_session_record(occurred_at=at(days=11), stage_id=OTHER_STAGE),
            a_session_record(occurred_at=at(days=12)),
        ),
    )

    result = SessionsCompleted(id="sessions", min_sessions=2, source=SRC).evaluate(state, NOW)

    assert (result.status, result.observed) == ("failed", 1)


# (pain, deload, completed) per session, oldest first; max 5 over the last 3
@pytest.mark.parametrize(
    ("sessions", "status", "observed"),
    [
        ([], "unknown", None),
        ([(3, False, True)] * 2, "unknown", None),
        ([(3, False, True)] * 2 + [(3, True, True)], "unknown", None),
        ([(3, False, True)] * 3, "passed", 3),
        ([(5, False, True)] * 3, "passed", 5),
        ([(3, False, True), (3, False, True), (6, False, True)], "failed", 6),
        ([(6, False, True), (3, False, True), (3, False, True)], "failed", 6),
        ([(9, False, True)] + [(4, False, True)] * 3, "passed", 4),
        ([(3, False, True)] * 3 + [(9, True, True)], "passed", 3),
        ([(3, False, True)] * 2 + [(6, False, False)], "failed", 6),
    ],
    ids=[
        "no-sessions-unknown",
        "two-of-three-unknown",
        "deload-not-in-window-unknown",
        "all-below",
        "exactly-at-limit",
        "one-over-latest",
        "one-over-oldest-in-window",
        "older-than-window-ignored",
        "deload-ignored",
        "incomplete-session-pain-counts",
    ],
)
def test_pain_during_max_uses_the_last_k_non_deload_sessions(sessions, status, observed):
    state = a_state(
        sessions=tuple(
            a_session_record(
                occurred_at=at(days=day, hours=18),
                pain_during=pain,
                deload=deload,
                completed=completed,
            )
            for day, (pain, deload, completed) in enumerate(sessions)
        )
    )
    criterion = PainDuringMax(id="pain-during", max_pain=5, last_sessions=3, source=SRC)

    result = criterion.evaluate(state, NOW)

    assert (result.status, result.observed, result.threshold) == (status, observed, 5)


def test_pain_during_max_is_unknown_when_earlier_sessions_belong_to_another_stage():
    state = a_state(
        sessions=(
            *sessions_on_days([2, 2], stage_id=OTHER_STAGE),
            a_session_record(occurred_at=at(days=3, hours=18), pain_during=2),
        )
    )
    criterion = PainDuringMax(id="pain-during", max_pain=5, last_sessions=3, source=SRC)

    assert criterion.evaluate(state, NOW).status == "unknown"


SESSION_DAY_1 = at(days=1, hours=18)


def _morning(days: float, pain: int, hours: float = 7):
    return a_checkin_record(occurred_at=at(days=days, hours=hours), morning_pain=pain)


# Latest session is on day 1 at 18:00; check-ins as given.
@pytest.mark.parametrize(
    ("checkins", "status", "observed"),
    [
        ((), "unknown", None),
        ((_morning(1, 2),), "unknown", None),  # before the session only
        ((_morning(1, 2), _morning(1, 2, hours=18)), "unknown", None),  # same instant
        (
            (
                _morning(
                    3,
                    2,
                    hours=6,
                ),
            ),
            "passed",
            2,
        ),  # exactly 36 h later
        ((_morning(3, 2, hours=6.1),), "unknown", None),  # just past 36 h
        ((_morning(2, 5),), "passed", 5),  # at the limit, no previous morning
        ((_morning(2, 6),), "failed", 6),  # one over the limit
        ((_morning(1, 2), _morning(2, 3)), "failed", 3),  # rose vs the previous morning
        ((_morning(1, 3), _morning(2, 3)), "passed", 3),  # same as previous morning
        ((_morning(1, 4), _morning(2, 1)), "passed", 1),  # fell
        ((_morning(0, 1), _morning(1, 4), _morning(2, 4)), "passed", 4),  # vs latest before
        ((_morning(2, 2), _morning(3, 9)), "passed", 2),  # first check-in after counts
    ],
    ids=[
        "no-checkin",
        "only-checkin-before-session",
        "checkin-at-session-time",
        "exactly-36h",
        "past-36h",
        "at-limit",
        "over-limit",
        "rising",
        "steady",
        "falling",
        "compares-with-latest-previous",
        "first-after-session",
    ],
)
def test_next_morning_response_judges_the_checkin_after_the_latest_session(
    checkins, status, observed
):
    state = a_state(
        sessions=(
            a_session_record(occurred_at=at(hours=18)),
            a_session_record(occurred_at=SESSION_DAY_1),
        ),
        checkins=checkins,
    )
    criterion = NextMorningResponse(id="next-morning", max_pain=5, source=SRC)

    result = criterion.evaluate(state, NOW)

    assert (result.status, result.observed, result.threshold) == (status, observed, 5)


def test_next_morning_response_is_unknown_without_a_session_at_this_stage():
    state = a_state(
        sessions=(a_session_record(stage_id=OTHER_STAGE),),
        checkins=(_morning(1, 0),),
    )

    result = NextMorningResponse(id="next-morning", max_pain=5, source=SRC).evaluate(state, NOW)

    assert (result.status, result.observed) == ("unknown", None)


def test_next_morning_response_is_unknown_when_checkin_only_follows_an_older_session():
    state = a_state(
        sessions=(
            a_session_record(occurred_at=at(hours=18)),
            a_session_record(occurred_at=at(days=1, hours=18)),
        ),
        checkins=(_morning(1, 1),),  # after day 0's session, before day 1's
    )

    result = NextMorningResponse(id="next-morning", max_pain=5, source=SRC).evaluate(state, NOW)

    assert result.status == "unknown"


def test_next_morning_response_may_ignore_a_rise_when_configured():
    state = a_state(
        sessions=(a_session_record(occurred_at=SESSION_DAY_1),),
        checkins=(_morning(1, 1), _morning(2, 4)),
    )
    criterion = NextMorningResponse(
        id="next-morning", max_pain=5, not_above_previous_morning=False, source=SRC
    )

    assert criterion.evaluate(state, NOW).status == "passed"


REPS = "single_leg_heel_raise_reps"


# metrics per session, oldest first; minimum 10
@pytest.mark.parametrize(
    ("metrics", "status", "observed"),
    [
        ([], "unknown", None),
        ([{}, {}], "unknown", None),
        ([{"other_metric": 50}], "unknown", None),
        ([{REPS: 10}], "passed", 10),
        ([{REPS: 9.99}], "failed", 9.99),
        ([{REPS: 9}], "failed", 9),
        ([{REPS: 12}, {REPS: 8}], "failed", 8),
        ([{REPS: 8}, {REPS: 12}], "passed", 12),
        ([{REPS: 8}, {REPS: 12}, {}], "passed", 12),
        ([{REPS: 12}, {REPS: 8}, {"other_metric": 50}], "failed", 8),
    ],
    ids=[
        "no-sessions",
        "never-measured",
        "other-metric-only",
        "exactly-at-minimum",
        "just-below",
        "one-below",
        "latest-lower-wins",
        "latest-higher-wins",
        "latest-measurement-not-latest-session",
        "latest-measurement-below",
    ],
)
def test_metric_at_least_uses_the_latest_measurement_at_this_stage(metrics, status, observed):
    state = a_state(
        sessions=tuple(
            a_session_record(occurred_at=at(days=day, hours=18), metrics=m)
            for day, m in enumerate(metrics)
        )
    )
    criterion = MetricAtLeast(
        id="heel-raises", metric=REPS, min_value=10, unit="reps", label="heel raises", source=SRC
    )

    result = criterion.evaluate(state, NOW)

    assert (result.status, result.observed, result.threshold) == (status, observed, 10)


def test_metric_at_least_ignores_measurements_from_another_stage():
    state = a_state(
        sessions=(a_session_record(stage_id=OTHER_STAGE, metrics={REPS: 20}),),
    )
    criterion = MetricAtLeast(
        id="heel-raises", metric=REPS, min_value=10, unit="reps", label="heel raises", source=SRC
    )

    assert criterion.evaluate(state, NOW).status == "unknown"


@pytest.mark.parametrize(
    ("entered", "approvals", "status", "observed"),
    [
        (T0, (), "failed", None),
        (
            T0,
            (an_approval(occurred_at=at(days=2), clinician_id="physio-1"),),
            "passed",
            "physio-1",
        ),
        (T0, (an_approval(occurred_at=T0, clinician_id="physio-1"),), "passed", "physio-1"),
        (at(days=5), (an_approval(occurred_at=at(days=4)),), "failed", None),
        (T0, (an_approval(stage_id=OTHER_STAGE, occurred_at=at(days=2)),), "failed", None),
        (
            T0,
            (
                an_approval(occurred_at=at(days=1), clinician_id="physio-1"),
                an_approval(occurred_at=at(days=2), clinician_id="physio-2"),
            ),
            "passed",
            "physio-2",
        ),
    ],
    ids=[
        "none",
        "after-entering",
        "at-the-instant-of-entering",
        "before-entering",
        "other-stage",
        "latest-approver-reported",
    ],
)
def test_clinician_approval_counts_only_an_approval_at_this_stage_since_entering(
    entered, approvals, status, observed
):
    state = a_state(stage_entered_at=entered, approvals=approvals)

    result = ClinicianApproval(id="physio-review", source=SRC).evaluate(state, NOW)

    assert (result.status, result.observed) == (status, observed)


# --- step-back and safety rules (failed = the rule triggered) -----------------


# (pain, deload) per session, oldest first
@pytest.mark.parametrize(
    ("above", "consecutive", "sessions", "status", "observed"),
    [
        (5, 1, [], "passed", None),
        (5, 1, [(5, False)], "passed", 5),
        (5, 1, [(6, False)], "failed", 6),
        (5, 1, [(9, False), (3, False)], "passed", 3),
        (5, 1, [(3, False), (6, False)], "failed", 6),
        (5, 2, [(6, False)], "passed", 6),
        (5, 2, [(6, False), (6, False)], "failed", 6),
        (5, 2, [(6, False), (7, False)], "failed", 7),
        (5, 2, [(3, False), (6, False)], "passed", 6),
        (5, 2, [(6, False), (5, False)], "passed", 6),
        (5, 2, [(6, False), (6, False), (3, False)], "passed", 6),
        (6, 1, [(6, False)], "passed", 6),
        (6, 1, [(7, False)], "failed", 7),
    ],
    ids=[
        "no-sessions",
        "at-threshold",
        "one-over",
        "only-newest-counts",
        "newest-over",
        "once-of-two",
        "twice-in-a-row",
        "twice-in-a-row-observes-max",
        "second-only",
        "second-at-threshold",
        "streak-broken",
        "safety-at-threshold",
        "safety-one-over",
    ],
)
def test_pain_during_above_triggers_on_the_newest_sessions(
    above, consecutive, sessions, status, observed
):
    state = a_state(
        sessions=tuple(
            a_session_record(occurred_at=at(days=day, hours=18), pain_during=pain, deload=deload)
            for day, (pain, deload) in enumerate(sessions)
        )
    )
    rule = PainDuringAbove(id="pain", above=above, consecutive=consecutive, source=SRC)

    result = rule.evaluate(state, "step_back")

    assert (result.status, result.observed, result.threshold) == (status, observed, above)
    assert result.role == "step_back"


def test_pain_during_above_counts_consecutive_sessions_at_this_stage_only():
    state = a_state(
        sessions=(
            a_session_record(occurred_at=at(hours=18), stage_id=OTHER_STAGE, pain_during=6),
            a_session_record(occurred_at=at(days=1, hours=18), pain_during=6),
        )
    )
    rule = PainDuringAbove(id="pain", above=5, consecutive=2, source=SRC)

    assert rule.evaluate(state, "step_back").status == "passed"


@pytest.mark.parametrize(
    ("sessions", "status"),
    [
        ([(7, False), (2, True)], "passed"),
        ([(2, False), (9, True)], "failed"),
    ],
    ids=["old-flare-not-refired", "deload-pain-judged"],
)
def test_pain_during_above_judges_the_newest_session_even_when_it_is_a_deload(sessions, status):
    state = a_state(
        sessions=tuple(
            a_session_record(occurred_at=at(days=day, hours=18), pain_during=pain, deload=deload)
            for day, (pain, deload) in enumerate(sessions)
        )
    )
    rule = PainDuringAbove(id="severe", above=6, source=SRC)

    assert rule.evaluate(state, "safety").status == status


@pytest.mark.parametrize(
    ("pains", "status", "observed"),
    [
        ([6], "passed", 6),
        ([7], "failed", 7),
        ([0], "passed", 0),
        ([9, 2], "passed", 2),
        ([2, 9], "failed", 9),
    ],
    ids=["at-threshold", "one-over", "zero", "newest-low", "newest-high"],
)
def test_morning_pain_above_judges_the_newest_checkin(pains, status, observed):
    state = a_state(checkins=tuple(_morning(day, pain) for day, pain in enumerate(pains)))

    result = MorningPainAbove(id="severe-morning", above=6, source=SRC).evaluate(state, "safety")

    assert (result.status, result.observed, result.threshold) == (status, observed, 6)
    assert result.role == "safety"


@pytest.mark.parametrize(
    ("pains", "status", "observed", "threshold"),
    [
        ([3], "passed", 3, None),
        ([2, 3], "failed", 3, 2),
        ([3, 3], "passed", 3, 3),
        ([4, 3], "passed", 3, 4),
        ([1, 5, 2], "passed", 2, 5),
        ([5, 1, 2], "failed", 2, 1),
    ],
    ids=["first-checkin", "rose-by-one", "steady", "fell", "vs-previous-only", "rose-again"],
)
def test_morning_pain_rising_compares_with_the_morning_before(pains, status, observed, threshold):
    state = a_state(checkins=tuple(_morning(day, pain) for day, pain in enumerate(pains)))

    result = MorningPainRising(id="rising", source=SRC).evaluate(state, "step_back")

    assert (result.status, result.observed, result.threshold) == (status, observed, threshold)


def test_morning_pain_rising_orders_checkins_by_time_not_arrival():
    state = (
        a_state()
        .with_checkin(_morning(2, 3))
        .with_checkin(_morning(1, 4))  # arrives late, belongs before day 2
    )

    result = MorningPainRising(id="rising", source=SRC).evaluate(state, "step_back")

    assert (result.status, result.observed, result.threshold) == ("passed", 3, 4)


@pytest.mark.parametrize(
    ("swellings", "status"),
    [
        ([False], "passed"),
        ([True], "failed"),
        ([True, False], "passed"),
        ([False, True], "failed"),
    ],
    ids=["none", "swelling", "went-down", "new-swelling"],
)
def test_swelling_reported_judges_the_newest_checkin(swellings, status):
    state = a_state(
        checkins=tuple(
            a_checkin_record(occurred_at=at(days=day, hours=7), swelling=swelling)
            for day, swelling in enumerate(swellings)
        )
    )

    result = SwellingReported(id="swelling", source=SRC).evaluate(state, "safety")

    assert (result.status, result.observed) == (status, swellings[-1])


def test_a_result_carries_the_criterion_id_kind_and_source():
    criterion = DaysAtStage(id="min-days", min_days=14, source="silbernagel-2007")

    result = criterion.evaluate(a_state(), at(days=3))

    assert (result.id, result.kind, result.source) == (
        "min-days",
        "days_at_stage",
        "silbernagel-2007",
    )


# --- protocol validation -------------------------------------------------------


def _stage(stage_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": stage_id,
        "name": f"Stage {stage_id}",
        "prescription": {
            "summary": "Do the thing.",
            "exercises": [
                {"id": "calf-raise", "name": "Calf raise", "sets": 3, "frequency": "daily"}
            ],
        },
        "exit_criteria": [
            {"kind": "days_at_stage", "id": "min-days", "min_days": 7, "source": "src-a"}
        ],
        **overrides,
    }


def _protocol(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "test-protocol",
        "version": 1,
        "title": "Test",
        "summary": "A test protocol.",
        "review_note": "Not for clinical use.",
        "sources": {"src-a": "A. Author, 2020."},
        "stages": [_stage("one"), _stage("two")],
        **overrides,
    }


def test_a_minimal_protocol_validates():
    protocol = Protocol.model_validate(_protocol())

    assert protocol.ref == "test-protocol@1"
    assert [s.id for s in protocol.stages] == ["one", "two"]
    assert protocol.stage_index("two") == 1


@pytest.mark.parametrize(
    "document",
    [
        _protocol(
            stages=[
                _stage(
                    "one",
                    exit_criteria=[
                        {"kind": "days_at_stage", "id": "d", "min_days": 7, "source": "src-zz"}
                    ],
                )
            ]
        ),
        _protocol(
            stages=[
                _stage("one"),
                _stage(
                    "two",
                    step_back=[
                        {
                            "when": {"kind": "swelling_reported", "id": "s", "source": "src-zz"},
                            "action": "hold",
                        }
                    ],
                ),
            ]
        ),
        _protocol(
            safety=[
                {"when": {"kind": "morning_pain_above", "id": "m", "above": 6, "source": "src-zz"}}
            ]
        ),
    ],
    ids=["exit-criterion", "step-back-rule", "safety-rule"],
)
def test_a_protocol_citing_an_unlisted_source_is_refused(document):
    with pytest.raises(ValidationError, match="src-zz"):
        Protocol.model_validate(document)


def test_clinic_default_needs_no_listed_source():
    document = _protocol(
        sources={},
        stages=[
            _stage(
                "one",
                exit_criteria=[
                    {"kind": "days_at_stage", "id": "d", "min_days": 7, "source": "clinic default"}
                ],
            )
        ],
    )

    assert Protocol.model_validate(document).sources == {}


def test_duplicate_stage_ids_are_refused():
    with pytest.raises(ValidationError, match="stage ids must be unique"):
        Protocol.model_validate(_protocol(stages=[_stage("one"), _stage("one")]))


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [
                _stage(
                    "one",
                    step_back=[
                        {
                            "when": {"kind": "swelling_reported", "id": "s", "source": "src-a"},
                            "action": "regress",
                        }
                    ],
                )
            ],
            "the first stage cannot regress",
        ),
        (
            [
                _stage("one"),
                _stage(
                    "two",
                    step_back=[
                        {
                            "when": {"kind": "swelling_reported", "id": "s", "source": "src-a"},
                            "action": "regress",
                            "to_stage": "nowhere",
                        }
                    ],
                ),
            ],
            "to_stage 'nowhere' is not an earlier stage",
        ),
        (
            [
                _stage(
                    "one",
                    step_back=[
                        {
                            "when": {"kind": "swelling_reported", "id": "s", "source": "src-a"},
                            "action": "regress",
                            "to_stage": "two",
                        }
                    ],
                ),
                _stage("two"),
            ],
            "to_stage 'two' is not an earlier stage",
        ),
    ],
    ids=["regress-from-first-stage", "unknown-regress-target", "forward-regress-target"],
)
def test_an_impossible_regress_target_is_refused(stages, message):
    with pytest.raises(ValidationError, match=message):
        Protocol.model_validate(_protocol(stages=stages))


def test_a_stage_without_exit_criteria_is_refused():
    with pytest.raises(ValidationError, match="exit_criteria"):
        Protocol.model_validate(_protocol(stages=[_stage("one", exit_criteria=[])]))


def test_an_unknown_criterion_kind_is_refused():
    criterion = {"kind": "vibes_ok", "id": "v", "source": "src-a"}
    with pytest.raises(ValidationError):
        Protocol.model_validate(_protocol(stages=[_stage("one", exit_criteria=[criterion])]))


def test_the_shipped_achilles_protocol_loads():
    protocol = load_protocols()["achilles-tendinopathy@1"]

    assert protocol.ref == "achilles-tendinopathy@1"
    assert [s.id for s in protocol.stages] == [
        "start-loading",
        "start-strengthening",
        "heavy-loading",
        "maintenance",
    ]
    assert [r.when.id for r in protocol.safety] == [
        "severe-pain-during",
        "severe-morning-pain",
        "new-swelling",
    ]
    assert [c.kind for c in protocol.stages[0].exit_criteria] == [
        "days_at_stage",
        "sessions_completed",
        "pain_during_max",
        "next_morning_response",
        "metric_at_least",
    ]
