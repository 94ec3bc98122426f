"""What a consumer's readiness probe reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Readiness:
    """Set by the tasks as they connect and lose their connections."""

    started: bool = False
    #: Holds a listener slot (or every consumer listens): must hear expiries.
    listener: bool = False
    subscribed: bool = False
    bound: bool = False
    #: Redis answered the last listener-slot renewal (every consumer renews or asks for one).
    redis_ok: bool = True
    stopping: bool = False

    @property
    def listening(self) -> bool:
        """Hearing expiries now."""
        return self.listener and self.subscribed and not self.stopping

    @property
    def ready(self) -> bool:
        """Ready when every task runs, Redis answers, bound to JetStream and, if a listener,
        subscribed."""
        return (
            self.started
            and self.bound
            and self.redis_ok
            and (self.subscribed or not self.listener)
            and not self.stopping
        )

    def as_dict(self) -> dict[str, bool]:
        """The probe's JSON body."""
        return {
            "ready": self.ready,
            "listener": self.listener,
            "subscribed": self.subscribed,
            "bound": self.bound,
            "redis": self.redis_ok,
            "stopping": self.stopping,
        }
