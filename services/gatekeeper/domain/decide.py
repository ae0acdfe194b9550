"""The stage machine: (protocol, client state, new event) -> (new state, decision).

Pure and deterministic: time comes only from the event's `occurred_at`, the
decision id is derived from the causing event's id, and nothing here reads a
clock, a file or Redis. Replaying a history therefore re-creates the very same
decisions, which is what makes them auditable and re-explainable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from uuid import UUID, uuid5

from msgspec.structs import replace

from rehabgate.schemas.inbound import (
    CheckinLogged,
    ClientDischarged,
    ClientEnrolled,
    ClinicianAction,
    SessionLogged,
)
from rehabgate.schemas.outbound import CriterionResult, Outcome, ProgressionEvaluated

from .criteria.prescribed import shortfalls
from .errors import Rejected
from .history import (
    ApprovalRecord,
    CheckinRecord,
    ClientState,
    IncompleteHistory,
    ProgressEvent,
    SessionRecord,
    event_order,
)
from .protocol import Protocol, Stage

#: Namespace of decision ids: uuid5(namespace, causing event id).
DECISION_NAMESPACE = UUID("6c1f4a52-4a4e-4f0e-9a55-3b8f1f1c2b7e")

__all__ = [
    "DECISION_NAMESPACE",
    "Decision",
    "ProgressEvent",
    "decide",
    "decision_id_of",
    "enroll",
    "replay",
]


@dataclass(frozen=True)
class Decision:
    """The client's next state and, when something was decided, the decision event.

    A late event may also correct decisions recorded for events after it: each
    correction is the decision in-order arrival would have recorded for one of
    them, naming the decision it supersedes."""

    state: ClientState
    evaluation: ProgressionEvaluated | None
    corrections: tuple[ProgressionEvaluated, ...] = ()

    @property
    def evaluations(self) -> tuple[ProgressionEvaluated, ...]:
        """Every decision to record, in event time."""
        return (self.evaluation, *self.corrections) if self.evaluation else self.corrections


def enroll(protocol: Protocol, existing: ClientState | None, event: ClientEnrolled) -> Decision:
    """Place a new client at their start stage; the decision carries its prescription."""
    if existing is not None:
        raise Rejected(f"client already enrolled (on {existing.protocol})")
    if event.protocol != protocol.ref:
        raise Rejected(f"protocol {event.protocol} does not match {protocol.ref}")
    stage_id = event.start_stage or protocol.stages[0].id
    try:
        protocol.stage_index(stage_id)
    except KeyError:
        raise Rejected(f"protocol {protocol.ref} has no stage {stage_id!r}") from None
    entered = datetime.combine(event.start_date, time.min, tzinfo=UTC)
    state = ClientState(
        client_id=event.client_id,
        clinic_id=event.clinic_id,
        protocol=protocol.ref,
        stage_id=stage_id,
        stage_entered_at=min(entered, event.occurred_at),
        status="active",
        enrolment=event,
    )
    stage = protocol.stages[protocol.stage_index(stage_id)]
    return Decision(
        state,
        _evaluated(
            protocol,
            event,
            state,
            "unlocked",
            None,
            (),
            f"enrolled on {protocol.ref}, starting at {stage.name}",
        ),
    )


def decision_id_of(cause: ClientEnrolled | ProgressEvent) -> UUID:
    """A decision's id, from its cause: unique per client even when two clients'
    events share an event id (the notifier's ledger is keyed by it)."""
    return uuid5(DECISION_NAMESPACE, f"{cause.clinic_id}/{cause.client_id}/{cause.event_id}")


def decide(
    protocol: Protocol,
    state: ClientState,
    event: ProgressEvent,
    recorded: Mapping[str, ProgressionEvaluated] | None = None,
) -> Decision:
    """Record the event in the client's history and decide what it means.

    An event older than the newest one recorded is a late arrival: it is decided
    at its own time (on the history before it), and the events after it are
    decided again on top. `recorded` maps those events' ids to the decisions on
    record for them (the audit trail's); each whose transition comes out
    differently is corrected by a decision that supersedes the recorded one. So
    the decisions on record, read in event time, are the ones in-order arrival
    would have recorded, and every decision moves at most one stage.
    """
    if event.clinic_id != state.clinic_id:
        raise Rejected("client belongs to another clinic")
    if event.client_id != state.client_id:
        raise Rejected("event is for another client than this state")
    if state.knows(event):
        return Decision(state, None)
    if event.occurred_at < (enrolled := enrolled_at(state.enrolment)):
        raise Rejected(
            f"occurred_at {event.occurred_at.isoformat()} is before the client's enrolment "
            f"({enrolled.isoformat()})"
        )
    if state.is_late(event):
        return _late(protocol, state, event, recorded or {})
    decision = _apply(protocol, state, event)
    return Decision(decision.state.logged(event), decision.evaluation)


def enrolled_at(enrolment: ClientEnrolled) -> datetime:
    """The earliest a client's events may be dated: their start date in the earliest
    time zone on Earth (UTC+14), or when the enrolment was recorded if earlier."""
    start = datetime.combine(enrolment.start_date, time.min, tzinfo=UTC) - timedelta(hours=14)
    return min(start, enrolment.occurred_at)


def replay(
    protocol: Protocol, enrolment: ClientEnrolled, events: Sequence[ProgressEvent]
) -> list[Decision]:
    """Every decision of a history, replayed in event-time order under `protocol`.
    Events the machine refuses (e.g. after discharge) are skipped, as they were
    dead-lettered when they first arrived."""
    decisions = [enroll(protocol, None, enrolment.model_copy(update={"protocol": protocol.ref}))]
    for event in sorted(events, key=event_order):
        try:
            decisions.append(decide(protocol, decisions[-1].state, event))
        except Rejected:
            continue
    return decisions


def _late(
    protocol: Protocol,
    state: ClientState,
    event: ProgressEvent,
    recorded: Mapping[str, ProgressionEvaluated],
) -> Decision:
    if not state.can_replay(event):
        raise IncompleteHistory(
            f"late event needs the {state.applied} applied events, from a checkpoint "
            f"before it or from the enrolment; got {len(state.log)}"
        )
    key = event_order(event)
    earlier = sorted((e for e in state.log if event_order(e) < key), key=event_order)
    start = (
        replace(state.base, log=())
        if state.base is not None
        else replay(protocol, state.enrolment, ())[-1].state
    )
    for prior in earlier:
        try:
            start = decide(protocol, start, prior).state
        except Rejected:
            continue
    own = decide(protocol, start, event)
    current = own.state
    late = f"late {event.event_type} from {_when(event)}"
    corrections = []
    for later in sorted((e for e in state.log if event_order(e) > key), key=event_order):
        try:
            decided = decide(protocol, current, later)
        except Rejected:
            continue
        current = decided.state
        before = recorded.get(str(later.event_id))
        after = decided.evaluation
        if after is not None and _changed(after, before):
            corrections.append(_correction(after, before, event, late))
    evaluation = own.evaluation
    if evaluation is not None:
        evaluation = evaluation.model_copy(
            update={"summary": f"{late}, decided at its time: {evaluation.summary}"}
        )
    # The log now runs from the same checkpoint, so a later late event of the same
    # batch can replay from it too.
    current = replace(current, base=state.base)
    group = _what_the_client_hears(protocol, state, current, evaluation, corrections)
    if evaluation is None:
        return Decision(current, None, tuple(group))
    return Decision(current, group[0], tuple(group[1:]))


def _what_the_client_hears(
    protocol: Protocol,
    before: ClientState,
    after: ClientState,
    own: ProgressionEvaluated | None,
    corrections: Sequence[ProgressionEvaluated],
) -> list[ProgressionEvaluated]:
    """A late event's decisions, each marked with what the client is told of it.

    The client was told of the recorded course; what they must hear is the net
    change from where that left them (`before`) to where the history now puts
    them (`after`), not every re-decided step: a stage reached a day earlier than
    they were told is no news, and two corrections that cancel out are none. So:
    - each stage they now reach beyond the one they were told: its unlock, told
      (the last decision of the group that reaches it); a completion likewise;
    - a net step back (or a completion taken back): the group's last decision,
      told as a take-back (`taken_back`: the notifier says so plainly and alerts
      the physio);
    - a flag that was not on record before: told (and alerted, like any flag);
    - everything else: `silent` (on record for the physio, no client message).
    """
    group = [d for d in (own, *corrections) if d is not None]
    if not group:
        return group
    index = protocol.stage_index
    was, now = index(before.stage_id), index(after.stage_id)
    told: dict[int, str] = {}
    for i, decision in enumerate(group):
        if decision.outcome == "flagged" and decision.superseded_outcome != "flagged":
            told[i] = "told"
    completed_now = after.status == "completed" and before.status != "completed"
    taken_back = now < was or (before.status == "completed" and after.status != "completed")
    if taken_back:
        told[len(group) - 1] = "taken_back"
    else:
        for stage in range(was + 1, now + 1):
            reaching = [
                i
                for i, d in enumerate(group)
                if d.outcome == "unlocked" and d.to_stage and index(d.to_stage) == stage
            ]
            if reaching:
                told[reaching[-1]] = "told"
        if completed_now:
            done = [i for i, d in enumerate(group) if d.outcome == "completed"]
            if done:
                told[done[-1]] = "told"
    return [d.model_copy(update={"notice": told.get(i, "silent")}) for i, d in enumerate(group)]


def _changed(after: ProgressionEvaluated, before: ProgressionEvaluated | None) -> bool:
    """Whether a re-decided event needs a correction: its outcome or stage move
    differs from the one on record (a hold whose observed values changed does not;
    nor does a hold where nothing was recorded)."""
    if before is None:
        return after.outcome != "held"
    return (after.outcome, after.from_stage, after.to_stage) != (
        before.outcome,
        before.from_stage,
        before.to_stage,
    )


def _correction(
    after: ProgressionEvaluated,
    before: ProgressionEvaluated | None,
    late: ProgressEvent,
    told: str,
) -> ProgressionEvaluated:
    """`after`, recorded as the correction of `before` caused by the late event."""
    correction_id = uuid5(DECISION_NAMESPACE, f"{after.decision_id}/corrected-by/{late.event_id}")
    was = f"was {before.outcome}" if before is not None else "had no decision"
    return after.model_copy(
        update={
            "event_id": correction_id,
            "decision_id": correction_id,
            "supersedes": before.decision_id if before is not None else None,
            "superseded_outcome": before.outcome if before is not None else None,
            "corrected_after": late.event_id,
            "summary": f"corrected after a {told} ({was}): {after.summary}",
        }
    )


def _when(event: ProgressEvent) -> str:
    return event.occurred_at.strftime("%Y-%m-%d %H:%M %Z").strip()


def _apply(protocol: Protocol, state: ClientState, event: ProgressEvent) -> Decision:
    if state.status in ("completed", "discharged"):
        raise Rejected(f"client is {state.status}; no further progression events apply")
    if isinstance(event, ClientDischarged):
        return Decision(replace(state, status="discharged"), None)
    if isinstance(event, ClinicianAction):
        return _clinician(protocol, state, event)
    if isinstance(event, SessionLogged):
        record = SessionRecord.of(event, state.stage_id)
        prescription = _stage(protocol, state).prescription
        record = record.settled(tuple(shortfalls(record, prescription)))
        state = state.with_session(record)
        trigger_kind = "session"
    else:
        state = state.with_checkin(CheckinRecord.of(event))
        trigger_kind = "checkin"
    return _by_rules(protocol, state, event, trigger_kind)


def _by_rules(
    protocol: Protocol, state: ClientState, event: SessionLogged | CheckinLogged, kind: str
) -> Decision:
    stage = _stage(protocol, state)
    safety = [
        r.when.evaluate(state, "safety", event.occurred_at)
        for r in protocol.safety
        if r.when.applies_to == kind
    ]
    step_back = [
        (rule, rule.when.evaluate(state, "step_back", event.occurred_at))
        for rule in stage.step_back
        if rule.when.applies_to == kind
    ]
    exits = _exit_results(stage, state, event.occurred_at)
    results = (*safety, *(r for _, r in step_back), *exits)

    if any(r.status == "failed" for r in safety):
        flagged = replace(state, status="flagged")
        return Decision(
            flagged,
            _evaluated(
                protocol,
                event,
                flagged,
                "flagged",
                state.stage_id,
                results,
                "safety rule triggered: " + _texts(safety, "failed"),
            ),
        )
    if state.status in ("flagged", "on_hold"):
        why = "flagged to the physio" if state.status == "flagged" else "on hold by the physio"
        return Decision(
            state,
            _evaluated(
                protocol,
                event,
                state,
                "held",
                state.stage_id,
                results,
                f"progression paused: {why}; waiting for a clinician",
            ),
        )
    triggered = [(rule, r) for rule, r in step_back if r.status == "failed"]
    regress = next((rule for rule, _ in triggered if rule.action == "regress"), None)
    if regress is not None:
        target = regress.to_stage or protocol.stages[protocol.stage_index(state.stage_id) - 1].id
        moved = _enter(state, target, event.occurred_at)
        return Decision(
            moved,
            _evaluated(
                protocol,
                event,
                moved,
                "regressed",
                state.stage_id,
                results,
                "step-back rule triggered: " + _texts([r for _, r in triggered], "failed"),
            ),
        )
    if triggered:
        return Decision(
            state,
            _evaluated(
                protocol,
                event,
                state,
                "held",
                state.stage_id,
                results,
                "step-back rule triggered: " + _texts([r for _, r in triggered], "failed"),
            ),
        )
    return _gate(protocol, state, event, results, exits)


def _gate(
    protocol: Protocol,
    state: ClientState,
    event: SessionLogged | CheckinLogged | ClinicianAction,
    results: tuple[CriterionResult, ...],
    exits: tuple[CriterionResult, ...],
    clinician: ClinicianAction | None = None,
) -> Decision:
    """Unlock the next stage (or complete) when every exit criterion passed; else hold."""
    if all(r.status == "passed" for r in exits):
        return _advance(protocol, state, event, results, "all exit criteria met", clinician)
    waiting = [r for r in exits if r.status == "unknown"]
    failing = [r for r in exits if r.status == "failed"]
    parts = []
    if failing:
        parts.append("still needed: " + "; ".join(r.client_text for r in failing))
    if waiting:
        parts.append("not known yet: " + "; ".join(r.client_text for r in waiting))
    return Decision(
        state,
        _evaluated(
            protocol, event, state, "held", state.stage_id, results, " | ".join(parts), clinician
        ),
    )


def _advance(
    protocol: Protocol,
    state: ClientState,
    event: SessionLogged | CheckinLogged | ClinicianAction,
    results: tuple[CriterionResult, ...],
    why: str,
    clinician: ClinicianAction | None,
) -> Decision:
    index = protocol.stage_index(state.stage_id)
    if index + 1 == len(protocol.stages):
        done = replace(state, status="completed")
        return Decision(
            done,
            _evaluated(
                protocol,
                event,
                done,
                "completed",
                state.stage_id,
                results,
                f"{why}: protocol completed",
                clinician,
            ),
        )
    moved = _enter(state, protocol.stages[index + 1].id, event.occurred_at)
    return Decision(
        moved,
        _evaluated(
            protocol,
            event,
            moved,
            "unlocked",
            state.stage_id,
            results,
            f"{why}: unlocked {protocol.stages[index + 1].name}",
            clinician,
        ),
    )


def _clinician(protocol: Protocol, state: ClientState, action: ClinicianAction) -> Decision:
    """A physio's approve / hold / regress / override. The rules' verdict is still computed
    and kept in the decision, so the audit shows the action beside what rules would say."""
    stage = _stage(protocol, state)
    exits = _exit_results(stage, state, action.occurred_at)
    if action.action == "approve":
        # What the approval releases: it counts (where the protocol says so) only if
        # every other exit criterion had passed when it was given.
        others = [r for r in exits if r.kind != "clinician_approval"]
        approved = replace(
            state,
            status="active",
            approvals=(
                *state.approvals,
                ApprovalRecord(
                    stage_id=state.stage_id,
                    occurred_at=action.occurred_at,
                    clinician_id=action.clinician_id,
                    others_passed=all(r.status == "passed" for r in others),
                    others_pending=tuple(r.id for r in others if r.status != "passed"),
                ),
            ),
        )
        exits = _exit_results(stage, approved, action.occurred_at)
        return _gate(protocol, approved, action, exits, exits, action)
    if action.action == "hold":
        held = replace(state, status="on_hold")
        return Decision(
            held,
            _evaluated(
                protocol, action, held, "held", state.stage_id, exits, "held by clinician", action
            ),
        )
    if action.action == "advance_override":
        active = replace(state, status="active")
        if action.target_stage is not None:
            return _override_to(protocol, active, action, exits, action.target_stage)
        return _advance(protocol, active, action, exits, "advanced by clinician override", action)
    index = protocol.stage_index(state.stage_id)
    target = action.target_stage or (protocol.stages[index - 1].id if index > 0 else None)
    if target is None:
        raise Rejected("cannot regress from the first stage")
    try:
        target_index = protocol.stage_index(target)
    except KeyError:
        raise Rejected(f"protocol {protocol.ref} has no stage {target!r}") from None
    if target_index >= index:
        raise Rejected(f"regress target {target!r} is not an earlier stage")
    moved = replace(_enter(state, target, action.occurred_at), status="active")
    return Decision(
        moved,
        _evaluated(
            protocol,
            action,
            moved,
            "regressed",
            state.stage_id,
            exits,
            "regressed by clinician",
            action,
        ),
    )


def _override_to(
    protocol: Protocol,
    state: ClientState,
    action: ClinicianAction,
    exits: tuple[CriterionResult, ...],
    target: str,
) -> Decision:
    """advance_override with a target: move to that later stage, or refuse with why."""
    index = protocol.stage_index(state.stage_id)
    try:
        target_index = protocol.stage_index(target)
    except KeyError:
        raise Rejected(
            f"advance_override refused: protocol {protocol.ref} has no stage {target!r}"
        ) from None
    if target_index <= index:
        which = "the current stage" if target_index == index else "an earlier stage"
        raise Rejected(
            f"advance_override refused: target {target!r} is {which} "
            f"(use regress to go back, hold to stay)"
        )
    if target_index == index + 1:
        return _advance(protocol, state, action, exits, "advanced by clinician override", action)
    moved = _enter(state, target, action.occurred_at)
    skipped = ", ".join(s.name for s in protocol.stages[index + 1 : target_index])
    return Decision(
        moved,
        _evaluated(
            protocol, action, moved, "unlocked", state.stage_id, exits,
            f"advanced by clinician override to {protocol.stages[target_index].name}, "
            f"skipping {skipped}",
            action,
        ),
    )  # fmt: skip


def _stage(protocol: Protocol, state: ClientState) -> Stage:
    return protocol.stages[protocol.stage_index(state.stage_id)]


def _exit_results(stage: Stage, state: ClientState, now: datetime) -> tuple[CriterionResult, ...]:
    return tuple(c.evaluate(state, now) for c in stage.exit_criteria)


def _enter(state: ClientState, stage_id: str, at: datetime) -> ClientState:
    return replace(state, stage_id=stage_id, stage_entered_at=at)


def _texts(results: list[CriterionResult], status: str) -> str:
    return "; ".join(r.explanation for r in results if r.status == status)


def _evaluated(
    protocol: Protocol,
    cause: ClientEnrolled | ProgressEvent,
    after: ClientState,
    outcome: Outcome,
    from_stage: str | None,
    criteria: tuple[CriterionResult, ...] | list[CriterionResult],
    summary: str,
    clinician: ClinicianAction | None = None,
) -> ProgressionEvaluated:
    index = protocol.stage_index(after.stage_id)
    stage = protocol.stages[index]
    cause_id = str(cause.event_id)
    decision_id = decision_id_of(cause)
    return ProgressionEvaluated(
        event_id=decision_id,
        decision_id=decision_id,
        occurred_at=cause.occurred_at,
        clinic_id=cause.clinic_id,
        client_id=cause.client_id,
        correlation_id=cause.correlation_id or cause_id,
        outcome=outcome,
        protocol=protocol.ref,
        from_stage=from_stage,
        to_stage=after.stage_id,
        to_stage_name=stage.name,
        to_stage_number=index + 1,
        stage_count=len(protocol.stages),
        prescription=stage.prescription,
        summary=summary,
        criteria=tuple(criteria),
        cause_event_id=cause.event_id,
        cause_event_type=cause.event_type,
        decided_by="clinician" if clinician else "rules",
        clinician_id=clinician.clinician_id if clinician else None,
        clinician_reason=clinician.reason if clinician else None,
    )
