"""Pure domain: protocols, criteria and the stage machine. No I/O, no clock, no globals."""

from .decide import Decision, decide, enroll
from .errors import Rejected
from .history import ClientState
from .protocol import Protocol

__all__ = ["ClientState", "Decision", "Protocol", "Rejected", "decide", "enroll"]
