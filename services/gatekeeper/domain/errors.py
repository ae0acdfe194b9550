"""Domain refusals: events that can never be applied, however often they are retried."""


class Rejected(Exception):
    """The event is valid JSON and schema but cannot apply to this client (poison)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
