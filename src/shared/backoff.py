"""Exponential back-off with jitter, for reconnect and retry loops."""

from __future__ import annotations

import random

import trio


class Backoff:
    """Waits ``initial`` seconds, then twice as long each time up to ``cap``; ``reset`` restarts."""

    def __init__(self, initial: float = 0.1, cap: float = 5.0) -> None:
        self._initial = initial
        self._cap = cap
        self._next = initial
        self.attempts = 0

    def reset(self) -> None:
        """Start again from the initial delay."""
        self._next = self._initial
        self.attempts = 0

    def delay(self) -> float:
        """The next delay (with up to 20 % jitter), advancing the sequence."""
        current = self._next
        self._next = min(self._cap, self._next * 2)
        self.attempts += 1
        return float(current * random.uniform(0.8, 1.2))

    async def wait(self) -> None:
        """Sleep for the next delay."""
        await trio.sleep(self.delay())
