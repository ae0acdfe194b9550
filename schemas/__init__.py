"""rehabgate's event contracts, shared by both services and by clinic publishers."""

from .envelope import SCHEMA_VERSION, Envelope
from .inbound import (
    CheckinLogged,
    ClientContactUpdated,
    ClientDischarged,
    ClientEnrolled,
    ClinicianAction,
    ExerciseLog,
    InboundEvent,
    SessionLogged,
    SetLog,
    parse_inbound,
)
from .outbound import (
    ClientMessage,
    CriterionResult,
    DeliveryReceipt,
    Outcome,
    PrescribedExercise,
    Prescription,
    ProgressionEvaluated,
)

__all__ = [
    "SCHEMA_VERSION",
    "CheckinLogged",
    "ClientContactUpdated",
    "ClientDischarged",
    "ClientEnrolled",
    "ClientMessage",
    "ClinicianAction",
    "CriterionResult",
    "DeliveryReceipt",
    "Envelope",
    "ExerciseLog",
    "InboundEvent",
    "Outcome",
    "PrescribedExercise",
    "Prescription",
    "ProgressionEvaluated",
    "SessionLogged",
    "SetLog",
    "parse_inbound",
]
