"""Reading a logged session against the stage's prescription: what was short of it.

Only what both sides state is compared: a logged exercise against its prescribed
sets and reps (or hold time). A prescribed exercise missing from a session that
logged sets counts as not done when every exercise of the stage is prescribed
daily (they are all done every session); otherwise (a long run once a week, a
test once) a session is checked only for the exercises it logged.
"""

from __future__ import annotations

from rehabgate.schemas.outbound import PrescribedExercise, Prescription
from rehabgate.services.gatekeeper.domain.history import ExerciseRecord, SessionRecord

from .base import num


def shortfalls(session: SessionRecord, prescription: Prescription | None) -> list[str]:
    """Plain-word discrepancies between the logged sets and the prescription ([] when
    none, or when the session logged no sets: then its `completed` answer stands).

    `prescription` is the stage's the session was logged at (criteria read only the
    current stage's sessions), so what was worked out when it was logged stands."""
    if prescription is None:
        return []
    if session.short is not None:
        return list(session.short)
    if not session.exercises:
        return []
    logged = {e.exercise_id: e for e in session.exercises}
    together = all(p.frequency.strip().lower() == "daily" for p in prescription.exercises)
    found: list[str] = []
    for prescribed in prescription.exercises:
        exercise = logged.get(prescribed.id)
        if exercise is None:
            if together:
                found.append(f"{prescribed.name}: not logged")
            continue
        found.extend(_short(prescribed, exercise))
    return found


def dose(prescribed: PrescribedExercise) -> str:
    if prescribed.reps is not None:
        return f"{prescribed.sets} x {prescribed.reps}"
    if prescribed.hold_s is not None:
        return f"{prescribed.sets} x {prescribed.hold_s} s"
    return f"{prescribed.sets} sets"


def _short(prescribed: PrescribedExercise, exercise: ExerciseRecord) -> list[str]:
    sets = exercise.sets
    if len(sets) < prescribed.sets:
        return [
            f"{prescribed.name}: {len(sets)} of {prescribed.sets} sets ({dose(prescribed)} prescribed)"
        ]
    done = sets[: prescribed.sets]
    if prescribed.reps is not None:
        reps = [s.reps for s in done]
        if any(r is not None and r < prescribed.reps for r in reps):
            logged = ", ".join("?" if r is None else str(r) for r in reps)
            return [f"{prescribed.name}: {logged} reps ({dose(prescribed)} prescribed)"]
    elif prescribed.hold_s is not None:
        held = [s.duration_s for s in done]
        if any(h is not None and h < prescribed.hold_s for h in held):
            logged = ", ".join("?" if h is None else f"{num(h)} s" for h in held)
            return [f"{prescribed.name}: {logged} ({dose(prescribed)} prescribed)"]
    return []


def complete(session: SessionRecord, prescription: Prescription | None, check: bool) -> bool:
    """Completed as the client said and, when `check`, as the logged sets show."""
    return session.completed and not (check and shortfalls(session, prescription))
