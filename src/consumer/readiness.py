"""What a consumer's readiness probe reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _not_connected() -> bool:
    return False


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
    #: Asked at each probe: whether the NATS connection is up (a bound pull consumer does not
    #: notice that NATS went away until its next pull fails).
    nats_connected: Callable[[], bool] = _not_connected

    @property
    def listening(self) -> bool:
        """Hearing expiries now."""
        return self.listener and self.subscribed and not self.stopping

    @property
    def ready(self) -> bool:
        """Ready when every task runs, Redis answers, bound to JetStream and connected to NATS
        and, if a listener, subscribed."""
        return (
            self.started
            and self.bound
            and self.redis_ok
            and self.nats_connected()
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
            "nats_connected": self.nats_connected(),
            "stopping": self.stopping,
        }
