"""Table-driven tests for the training, trend, measurement and guard kinds:
boundaries pass/fail exactly at the threshold, and missing data is unknown."""

from __future__ import annotations

from typing import Any

import pytest
from msgspec.structs import replace

from rehabgate.services.gatekeeper.domain.criteria import (
    AdherenceAtLeast,
    ConsecutiveSessions,
    EffortAtMost,
    LimbSymmetryAtLeast,
    MetricRatioAtLeast,
    MorningTrendNotRising,
    NoSwelling,
    ObservationAbsent,
    ObservationReported,
    VolumeChangeAtMost,
    VolumeSpikeAbove,
)
from tests.unit.builders import a_checkin_record, a_session_record, a_state, at

SRC = "clinic default"


def sessions(*specs: dict[str, Any]) -> tuple[Any, ...]:
    """One session a day at 18:00 from day 0, each spec overriding fields."""
    return tuple(
        a_session_record(occurred_at=at(days=day, hours=18), **spec)
        for day, spec in enumerate(specs)
    )


@pytest.mark.parametrize(
    ("done_days", "now_day", "status", "observed"),
    [
        (range(14), 13, "passed", 100.0),  # 7 of 7 planned in the last 7 days
        (range(0, 14, 2), 13, "failed", 42.9),  # days 8, 10, 12: 3 of 7
        (range(8, 14), 13, "passed", 85.7),  # 6 of 7, just above 80
        (range(3), 5, "unknown", None),  # fewer than 7 days at stage
    ],
)
def test_adherence_over_a_window(
    done_days: range, now_day: int, status: str, observed: float | None
) -> None:
    state = a_state(
        sessions=tuple(a_session_record(occurred_at=at(days=d, hours=18)) for d in done_days)
    )
    rule = AdherenceAtLeast(id="a", source=SRC, min_percent=80, window_days=7, sessions_per_week=7)
    result = rule.evaluate(state, at(days=now_day, hours=20))
    assert (result.status, result.observed) == (status, observed)


@pytest.mark.parametrize(
    ("specs", "status", "streak"),
    [
        ([{}, {}], "passed", 2),
        ([{}, {"completed": False}], "failed", 0),
        ([{}, {}, {"deload": True}], "failed", 0),
        ([{"pain_during": 6}, {}, {}], "passed", 2),
        ([{}, {"pain_during": 4}], "failed", 0),
    ],
)
def test_consecutive_qualifying_sessions(
    specs: list[dict[str, Any]], status: str, streak: int
) -> None:
    rule = ConsecutiveSessions(id="c", source=SRC, count=2, max_pain=3)
    result = rule.evaluate(a_state(sessions=sessions(*specs)), at(days=10))
    assert (result.status, result.observed) == (status, streak)


@pytest.mark.parametrize(
    ("rpes", "status"),
    [([8, 8], "passed"), ([8, 8.5], "failed"), ([None, 7], "unknown"), ([7], "unknown")],
)
def test_effort_of_the_last_set(rpes: list[float | None], status: str) -> None:
    state = a_state(sessions=sessions(*({"last_set_rpe": r} for r in rpes)))
    result = EffortAtMost(id="e", source=SRC, max_rpe=8, last_sessions=2).evaluate(
        state, at(days=9)
    )
    assert result.status == status


def weekly(volumes_before: list[float], volumes_recent: list[float]) -> Any:
    """Sessions on days 0-6 (the week before) and 7-13 (the last week)."""
    before = [a_session_record(occurred_at=at(days=d, hours=18), volume=v)
              for d, v in enumerate(volumes_before)]  # fmt: skip
    recent = [a_session_record(occurred_at=at(days=7 + d, hours=18), volume=v)
              for d, v in enumerate(volumes_recent)]  # fmt: skip
    return a_state(sessions=tuple(before + recent))


@pytest.mark.parametrize(
    ("before", "recent", "status", "change"),
    [
        ([100, 100], [110, 100], "passed", 5.0),
        ([100, 100], [120, 100], "passed", 10.0),
        ([100, 100], [130, 100], "failed", 15.0),
        ([], [100], "unknown", None),
    ],
)
def test_weekly_volume_change(
    before: list[float], recent: list[float], status: str, change: float | None
) -> None:
    rule = VolumeChangeAtMost(id="v", source=SRC, max_percent=10, window_days=7)
    result = rule.evaluate(weekly(before, recent), at(days=13, hours=20))
    assert (result.status, result.observed) == (status, change)


def test_deload_sessions_do_not_count_as_volume() -> None:
    state = weekly([100], [100])
    state = replace(state, sessions=(
        *state.sessions, a_session_record(occurred_at=at(days=12, hours=18), volume=500, deload=True)
    ))  # fmt: skip
    rule = VolumeChangeAtMost(id="v", source=SRC, max_percent=10)
    assert rule.evaluate(state, at(days=13, hours=20)).observed == 0.0


@pytest.mark.parametrize(("recent_volume", "status"), [(130, "passed"), (131, "failed")])
def test_volume_spike_rule_triggers_above_the_limit(recent_volume: float, status: str) -> None:
    state = weekly([100], [recent_volume])
    rule = VolumeSpikeAbove(id="spike", source=SRC, max_percent=30, window_days=7)
    assert rule.evaluate(state, "step_back").status == status


@pytest.mark.parametrize(
    ("before", "recent", "status"),
    [
        ([(3, 3), (3, 3)], [(2, 3), (3, 2)], "passed"),
        ([(3, 3)], [(3, 3)], "passed"),
        ([(2, 2)], [(3, 2)], "failed"),
        ([(2, 2)], [(2, 3)], "failed"),
        ([], [(1, 1)], "unknown"),
    ],
)
def test_morning_trend_week_on_week(
    before: list[tuple[int, int]], recent: list[tuple[int, int]], status: str
) -> None:
    checkins = [
        a_checkin_record(occurred_at=at(days=d, hours=7), morning_pain=p, morning_stiffness=s)
        for d, (p, s) in enumerate(before)
    ]
    checkins += [a_checkin_record(occurred_at=at(days=7 + d, hours=7), morning_pain=p,
                                  morning_stiffness=s) for d, (p, s) in enumerate(recent)]  # fmt: skip
    result = MorningTrendNotRising(id="t", source=SRC).evaluate(
        a_state(checkins=tuple(checkins)), at(days=13, hours=20)
    )
    assert result.status == status


@pytest.mark.parametrize(
    ("metrics", "status", "observed"),
    [
        ({"squat_kg": 120, "body_weight_kg": 80}, "passed", 1.5),
        ({"squat_kg": 119, "body_weight_kg": 80}, "failed", 1.488),
        ({"squat_kg": 120}, "unknown", None),
        ({"squat_kg": 120, "body_weight_kg": 0}, "unknown", None),
    ],
)
def test_metric_relative_to_body_weight(
    metrics: dict[str, float], status: str, observed: float | None
) -> None:
    rule = MetricRatioAtLeast(id="r", source=SRC, metric="squat_kg", per_metric="body_weight_kg",
                              min_ratio=1.5, label="squat per kg body weight")  # fmt: skip
    result = rule.evaluate(a_state(sessions=sessions({"metrics": metrics})), at(days=2))
    assert (result.status, result.observed) == (status, observed)


@pytest.mark.parametrize(
    ("involved", "uninvolved", "status", "lsi"),
    [(90, 100, "passed", 90.0), (89.9, 100, "failed", 89.9), (None, 100, "unknown", None)],
)
def test_limb_symmetry_index(
    involved: float | None, uninvolved: float, status: str, lsi: float | None
) -> None:
    metrics = {"hop_uninvolved": uninvolved} | (
        {} if involved is None else {"hop_involved": involved}
    )
    rule = LimbSymmetryAtLeast(id="lsi", source=SRC, involved="hop_involved",
                               uninvolved="hop_uninvolved", min_percent=90, label="single hop")  # fmt: skip
    result = rule.evaluate(a_state(sessions=sessions({"metrics": metrics})), at(days=2))
    assert (result.status, result.observed) == (status, lsi)


@pytest.mark.parametrize(
    ("observations", "status"),
    [
        ([{"limp": False}, {"limp": False}], "passed"),
        ([{"limp": True}, {"limp": False}], "failed"),
        ([{}, {"limp": False}], "unknown"),
    ],
)
def test_observation_absent_over_the_last_sessions(
    observations: list[dict[str, bool]], status: str
) -> None:
    state = a_state(sessions=sessions(*({"observations": o} for o in observations)))
    rule = ObservationAbsent(id="o", source=SRC, observation="limp", label="limp", last_sessions=2)
    assert rule.evaluate(state, at(days=5)).status == status


@pytest.mark.parametrize(
    ("observations", "status"),
    [({"giving_way": True}, "failed"), ({"giving_way": False}, "passed"), ({}, "unknown")],
)
def test_observation_reported_rule(observations: dict[str, bool], status: str) -> None:
    rule = ObservationReported(id="gw", source=SRC, observation="giving_way", label="giving way")
    state = a_state(sessions=sessions({"observations": observations}))
    assert rule.evaluate(state, "safety").status == status


@pytest.mark.parametrize(
    ("swellings", "status"),
    [([False, False], "passed"), ([True, False], "failed"), ([False], "unknown")],
)
def test_no_swelling_over_the_last_checkins(swellings: list[bool], status: str) -> None:
    checkins = tuple(a_checkin_record(occurred_at=at(days=d + 1, hours=7), swelling=s)
                     for d, s in enumerate(swellings))  # fmt: skip
    result = NoSwelling(id="s", source=SRC, last_checkins=2).evaluate(
        a_state(checkins=checkins), at(days=5)
    )
    assert result.status == status
