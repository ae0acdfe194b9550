"""Exit criteria on time and training: days at stage, sessions done, adherence,
consecutive qualifying sessions, effort, and load progression."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from rehabgate.schemas.outbound import CriterionResult, PrescribedExercise
from rehabgate.services.gatekeeper.domain.history import ClientState, SessionRecord

from .base import Kind, Pain, Percent, PrescriptionAware, Slug, between, day, num, until, verdict
from .prescribed import complete, shortfalls


class _CheckedSessions(PrescriptionAware):
    """Kinds that count completed sessions. With `against_prescription`, a session
    marked completed counts only if its logged sets (when it logged any) meet the
    stage's prescription; the discrepancies are named in the explanation."""

    against_prescription: bool = False

    def _complete(self, session: SessionRecord) -> bool:
        return complete(session, self.prescribed, self.against_prescription)

    def _discrepancies(self, sessions: tuple[SessionRecord, ...] | list[SessionRecord]) -> str:
        if not self.against_prescription:
            return ""
        short = [
            (s, missed)
            for s in sessions
            if s.completed and not s.deload and (missed := shortfalls(s, self.prescribed))
        ]
        if not short:
            return ""
        # The latest few, by name; the rest counted (a physio reads this between two
        # appointments, and it must not grow with a long stage).
        named = [f"{day(s.occurred_at)}: " + "; ".join(missed) for s, missed in short[-3:]]
        earlier = len(short) - len(named)
        more = f" (and {earlier} earlier session{'s' if earlier > 1 else ''})" if earlier else ""
        return "; marked complete but short of the prescription: " + " | ".join(named) + more


class DaysAtStage(Kind):
    """Minimum time at a stage, for tissue adaptation."""

    kind: Literal["days_at_stage"] = "days_at_stage"
    min_days: Annotated[int, Field(ge=0, le=730)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        # Whole days elapsed between two instants: the same whatever UTC offset the
        # clinic wrote either timestamp in.
        days = (now - state.stage_entered_at) // timedelta(days=1)
        return self._result(
            "exit",
            verdict(days >= self.min_days),
            days,
            self.min_days,
            f"{days} full days at this stage (minimum {self.min_days})",
            f"at least {self.min_days} days at this stage ({days} so far)",
            unit="days",
        )


class SessionsCompleted(_CheckedSessions):
    """Completed sessions at the stage; skipped, incomplete and deload ones never count."""

    kind: Literal["sessions_completed"] = "sessions_completed"
    min_sessions: Annotated[int, Field(ge=1, le=500)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        sessions = state.sessions_at_stage()
        done = sum(1 for s in sessions if self._complete(s) and not s.deload)
        return self._result(
            "exit",
            verdict(done >= self.min_sessions),
            done,
            self.min_sessions,
            f"{done} completed sessions at this stage (minimum {self.min_sessions})"
            + self._discrepancies(sessions),
            f"{self.min_sessions} sessions with every prescribed set done ({done} so far)",
            unit="sessions",
            window="at this stage",
        )


class AdherenceAtLeast(_CheckedSessions):
    """Completed sessions over the last `window_days`, as a percentage of those prescribed.
    Unknown until the client has been at the stage for the whole window."""

    kind: Literal["adherence_at_least"] = "adherence_at_least"
    min_percent: Percent
    window_days: Annotated[int, Field(ge=1, le=90)]
    sessions_per_week: Annotated[float, Field(gt=0, le=21)]

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.window_days} days"
        client_text = f"doing at least {num(self.min_percent)}% of your planned sessions"
        start = now - timedelta(days=self.window_days)
        if start < state.stage_entered_at:
            return self._result(
                "exit", "unknown", None, self.min_percent,
                f"less than {self.window_days} days at this stage to judge adherence",
                client_text, unit="%", window=window,
            )  # fmt: skip
        sessions = between(state.sessions_at_stage(), start, now)
        done = sum(1 for s in sessions if self._complete(s) and not s.deload)
        expected = self.sessions_per_week * self.window_days / 7
        percent = round(100 * done / expected, 1)
        return self._result(
            "exit", verdict(percent >= self.min_percent), percent, self.min_percent,
            f"{done} of {num(expected)} planned sessions done ({num(percent)}%)"
            + self._discrepancies(sessions),
            client_text, unit="%", window=window,
        )  # fmt: skip


class ConsecutiveSessions(_CheckedSessions):
    """The last `count` sessions at the stage were all completed, none a deload, each
    with pain during at most `max_pain` ("complete each phase twice")."""

    kind: Literal["consecutive_sessions"] = "consecutive_sessions"
    count: Annotated[int, Field(ge=1, le=50)]
    max_pain: Pain = 10

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        streak = 0
        sessions = until(state.sessions_at_stage(), now)
        for session in reversed(sessions):
            if (
                not self._complete(session)
                or session.deload
                or session.pain_during > self.max_pain
            ):
                break
            streak += 1
        pain = f" with pain at {self.max_pain}/10 or less" if self.max_pain < 10 else ""
        return self._result(
            "exit", verdict(streak >= self.count), streak, self.count,
            f"{streak} qualifying sessions in a row (need {self.count})"
            + self._discrepancies(sessions[-self.count :]),
            f"{self.count} full sessions in a row{pain}", unit="sessions", window="at this stage",
        )  # fmt: skip


class EffortAtMost(Kind):
    """Effort of the last set (RPE; RIR = 10 - RPE) at most `max_rpe` in each of the
    last `last_sessions` sessions: the load is comfortably within reach."""

    kind: Literal["effort_at_most"] = "effort_at_most"
    max_rpe: Annotated[float, Field(ge=1, le=10)]
    last_sessions: Annotated[int, Field(ge=1, le=20)] = 2

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        window = f"last {self.last_sessions} sessions"
        client_text = f"last sets feeling no harder than {num(self.max_rpe)}/10"
        rated = [
            s
            for s in until(state.sessions_at_stage(), now)
            if s.last_set_rpe is not None and not s.deload
        ]
        recent = rated[-self.last_sessions :]
        if len(recent) < self.last_sessions:
            return self._result(
                "exit", "unknown", None, self.max_rpe,
                f"effort (RPE) reported in {len(recent)} of {self.last_sessions} sessions",
                client_text, unit="RPE", window=window,
            )  # fmt: skip
        hardest = max(s.last_set_rpe or 0 for s in recent)
        return self._result(
            "exit", verdict(hardest <= self.max_rpe), hardest, self.max_rpe,
            f"hardest last set RPE {num(hardest)} (limit {num(self.max_rpe)})",
            client_text, unit="RPE", window=window,
        )  # fmt: skip


class VolumeChangeAtMost(Kind):
    """Training volume (reps x load) of the last `window_days` compared with the window
    before: the increase stays within `max_percent` (gradual loading)."""

    kind: Literal["volume_change_at_most"] = "volume_change_at_most"
    max_percent: Percent
    window_days: Annotated[int, Field(ge=1, le=28)] = 7
    training_weeks: bool = Field(
        default=False,
        description="Compare training weeks (Monday to Sunday, in the client's own time "
        "zone: each session's offset) `weeks_apart` apart, instead of rolling windows.",
    )
    weeks_apart: Annotated[int, Field(ge=1, le=4)] = 1

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        if self.training_weeks:
            change, detail = weekly_change(state, now, self.weeks_apart)
            window = _weeks_window(self.weeks_apart)
        else:
            change = volume_change(state, now, self.window_days)
            window = f"last {self.window_days} days vs the {self.window_days} before"
            detail = "" if change is None else f"volume changed by {num(change)}%"
        client_text = f"building up by no more than {num(self.max_percent)}% at a time"
        if change is None:
            return self._result(
                "exit", "unknown", None, self.max_percent,
                "no training volume logged in the earlier window to compare with",
                client_text, unit="%", window=window,
            )  # fmt: skip
        return self._result(
            "exit", verdict(change <= self.max_percent), change, self.max_percent,
            f"{detail} (limit {num(self.max_percent)}%)",
            client_text, unit="%", window=window,
        )  # fmt: skip


def _weeks_window(weeks_apart: int) -> str:
    if weeks_apart == 1:
        return "training week vs the week before"
    return f"training week vs the week {weeks_apart} weeks earlier"


def _monday(of: date) -> date:
    return of - timedelta(days=of.weekday())


def weekly_change(state: ClientState, now: datetime, weeks_apart: int) -> tuple[float | None, str]:
    """The rise in weekly volume over `weeks_apart` weeks, as Nielsen 2014 measured
    progression: a training week's volume against the week `weeks_apart` before it.
    Weeks run Monday to Sunday on the dates the client trained (each session's own
    UTC offset). The last finished week is compared, and the current week too once
    it already rose more (it can only grow); the larger rise counts. None: no base."""
    weekly: dict[date, float] = {}
    for s in state.sessions:
        if s.deload or s.occurred_at > now:
            continue
        week = _monday(s.occurred_at.date())
        weekly[week] = weekly.get(week, 0.0) + s.volume
    current = _monday(now.date())
    found: list[tuple[float, str]] = []
    for week in (current - timedelta(weeks=1), current):
        base_week = week - timedelta(weeks=weeks_apart)
        base = weekly.get(base_week, 0.0)
        if base <= 0:
            continue
        volume = weekly.get(week, 0.0)
        change = round(100 * (volume - base) / base, 1)
        so_far = " so far" if week == current else ""
        found.append((change, f"week of {day_of(week)}{so_far}: volume {num(volume)} vs "
                              f"{num(base)} in the week of {day_of(base_week)} "
                              f"({'+' if change >= 0 else ''}{num(change)}%)"))  # fmt: skip
    if not found:
        return None, ""
    change, detail = max(found, key=lambda item: item[0])
    return change, detail


def day_of(week: date) -> str:
    return f"{week.day} {week:%b}"


def volume_change(state: ClientState, now: datetime, window_days: int) -> float | None:
    """Percent change of non-deload volume, last window vs the one before (None: no base)."""
    span = timedelta(days=window_days)
    sessions = [s for s in state.sessions if not s.deload]
    recent = sum(s.volume for s in sessions if now - span < s.occurred_at <= now)
    before = sum(s.volume for s in sessions if now - 2 * span < s.occurred_at <= now - span)
    if before <= 0:
        return None
    return round(100 * (recent - before) / before, 1)


class RepsOverTarget(PrescriptionAware):
    """The 2-for-2 rule: in each of the last `count` sessions (in a row, deloads
    skipped), the last set of every prescribed exercise with reps reached at least
    `over` reps more than prescribed; the session was completed in full."""

    kind: Literal["reps_over_target"] = "reps_over_target"
    count: Annotated[int, Field(ge=1, le=10)] = 2
    over: Annotated[int, Field(ge=0, le=50)] = 2

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        client_text = (
            f"{self.over} or more reps over your target on the last set, "
            f"in {self.count} sessions in a row"
        )
        window = f"last {self.count} sessions"
        targets = [p for p in (self.prescribed.exercises if self.prescribed else ()) if p.reps]
        sessions = [s for s in until(state.sessions_at_stage(), now) if not s.deload]
        streak, unknown = 0, False
        details: list[str] = []
        for session in reversed(sessions[-self.count :]):
            ok, detail = self._qualifies(session, targets)
            details.append(f"{day(session.occurred_at)}: {detail}")
            if ok is None:
                unknown = True
                break
            if not ok:
                break
            streak += 1
        details.reverse()
        explanation = (
            f"{streak} of {self.count} sessions in a row with the last set {self.over}+ reps "
            f"over target" + (": " + " | ".join(details) if details else "")
        )
        status = verdict(streak >= self.count)
        if status == "failed" and unknown:
            status = "unknown"
        return self._result(
            "exit", status, streak, self.count, explanation, client_text,
            unit="sessions", window=window,
        )  # fmt: skip

    def _qualifies(
        self, session: SessionRecord, targets: list[PrescribedExercise]
    ) -> tuple[bool | None, str]:
        if not session.completed:
            return False, "not completed"
        if not targets:
            return None, "the stage prescribes no reps to compare with"
        if not session.exercises:
            return None, "no sets logged"
        logged = {e.exercise_id: e for e in session.exercises}
        ok, parts = True, []
        for prescribed in targets:
            name, reps = prescribed.name, prescribed.reps or 0
            exercise = logged.get(prescribed.id)
            if exercise is None or not exercise.sets or exercise.sets[-1].reps is None:
                ok = False
                parts.append(f"{name}: last set not logged")
                continue
            last = exercise.sets[-1].reps
            margin = last - reps
            ok = ok and margin >= self.over
            parts.append(f"{name} {last} of {reps} ({'+' if margin >= 0 else ''}{margin})")
        return ok, ", ".join(parts)


class EachPhaseAtLeast(Kind):
    """Phases as data: every phase of the stage run in at least `min_sessions`
    completed sessions (deloads never count, pain during at most `max_pain`), read
    from the phase each session says it ran. A session without a phase counts for none."""

    kind: Literal["each_phase_at_least"] = "each_phase_at_least"
    phases: Annotated[tuple[Slug, ...], Field(min_length=1, max_length=20)]
    min_sessions: Annotated[int, Field(ge=1, le=20)] = 2
    max_pain: Pain = 10

    def evaluate(self, state: ClientState, now: datetime) -> CriterionResult:
        sessions = until(state.sessions_at_stage(), now)
        counts = {phase: 0 for phase in self.phases}
        unnamed = 0
        for s in sessions:
            if not s.completed or s.deload or s.pain_during > self.max_pain:
                continue
            if s.phase in counts:
                counts[s.phase] += 1
            elif s.phase is None:
                unnamed += 1
        short = [(n, phase, c) for n, (phase, c) in enumerate(counts.items(), 1)
                 if c < self.min_sessions]  # fmt: skip
        fewest = min(counts.values())
        explanation = (
            "sessions per phase: "
            + ", ".join(f"{phase} {c}" for phase, c in counts.items())
            + f" (need {self.min_sessions} each)"
        )
        if unnamed:
            explanation += f"; {unnamed} session(s) did not say which phase they ran"
        client_text = f"each phase done at least {self.min_sessions} times"
        if short:
            client_text += (
                " (still to do: "
                + ", ".join(f"phase {n}: {c} of {self.min_sessions}" for n, _, c in short)
                + ")"
            )
        return self._result(
            "exit", verdict(not short), fewest, self.min_sessions, explanation, client_text,
            unit="sessions", window="at this stage",
        )  # fmt: skip
