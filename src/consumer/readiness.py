"""What a consumer's readiness probe reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Readiness:
    """Set by the tasks as they connect and lose their connections."""

    started: bool = False
    subscribed: bool = False
    bound: bool = False
    stopping: bool = False

    @property
    def ready(self) -> bool:
        """Ready when every task runs, subscribed to expirations and bound to JetStream."""
        return self.started and self.subscribed and self.bound and not self.stopping

    def as_dict(self) -> dict[str, bool]:
        """The probe's JSON body."""
        return {
            "ready": self.ready,
            "subscribed": self.subscribed,
            "bound": self.bound,
            "stopping": self.stopping,
        }
