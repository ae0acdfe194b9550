"""What to tell a client about a decision, in plain words. Pure: no I/O, no clock.

Step-backs and flags are written to reassure, not alarm. Held decisions send
nothing (a daily digest is a later feature): a client is told when something
changes, and what the change asks of them.
"""

from __future__ import annotations

from datetime import datetime

from rehabgate.schemas.outbound import ClientMessage, Prescription, ProgressionEvaluated


def compose(decision: ProgressionEvaluated, created_at: datetime) -> ClientMessage | None:
    """The message for `decision`, or None when the outcome needs none."""
    stage = f"{decision.to_stage_name} ({decision.to_stage_number} of {decision.stage_count})"
    plan = _plan(decision.prescription)
    if decision.outcome == "unlocked" and decision.from_stage is None:
        title = "Welcome to your rehab programme"
        body = f"You are starting {stage}.\n\n{plan}"
    elif decision.outcome == "unlocked":
        met = _reasons(decision, "exit", "passed")
        title = f"You've unlocked {decision.to_stage_name}"
        why = f"Well done: you met every goal of your last stage ({met})." if met else ""
        if decision.decided_by == "clinician":
            why = "Your physio has moved you on to the next stage."
        body = f"{why}\n\nYou are now on {stage}. What changes:\n{plan}".strip()
    elif decision.outcome == "regressed":
        seen = _reasons(decision, "step_back", "failed", first_only=True)
        because = f"Your recent logs showed {seen}. " if seen else ""
        title = "Let's take a step back for a little while"
        body = (
            f"{because}That is a normal part of rehab and nothing to worry about: "
            f"going back to {stage} lets things settle before you build up again.\n\n{plan}"
        )
    elif decision.outcome == "flagged":
        seen = _reasons(decision, "safety", "failed")
        because = f"You reported {seen}. " if seen else ""
        title = "Your physio will be in touch"
        body = (
            f"{because}We have paused your progression for now and let your physio know; "
            "they will contact you soon. Keep to gentle, comfortable movement until then. "
            "If your symptoms get much worse, contact your clinic straight away."
        )
    elif decision.outcome == "completed":
        title = "You've completed your programme"
        body = (
            "Congratulations: you have met every goal of the final stage. "
            "Keep up your maintenance exercises as your physio advised."
        )
    else:
        return None
    return ClientMessage(
        message_id=decision.decision_id,
        decision_id=decision.decision_id,
        clinic_id=decision.clinic_id,
        client_id=decision.client_id,
        outcome=decision.outcome,
        locale="en",
        title=title,
        body=body,
        created_at=created_at,
    )


def _reasons(
    decision: ProgressionEvaluated, role: str, status: str, first_only: bool = False
) -> str:
    """Client words of the matching criteria; `first_only` for rules, where the first
    triggered one (the protocol lists the strongest first) is the reason."""
    texts = [c.client_text for c in decision.criteria if c.role == role and c.status == status]
    return "; ".join(texts[:1] if first_only else texts)


def _plan(prescription: Prescription | None) -> str:
    if prescription is None:
        return ""
    lines = [prescription.summary]
    for exercise in prescription.exercises:
        dose = f"{exercise.sets} x {exercise.reps}" if exercise.reps else f"{exercise.sets} sets"
        if exercise.hold_s:
            dose += f" x {exercise.hold_s}s hold"
        load = f", {exercise.load}" if exercise.load else ""
        lines.append(f"- {exercise.name}: {dose}{load}, {exercise.frequency}")
    lines.extend(prescription.notes)
    return "\n".join(lines)
