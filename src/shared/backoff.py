"""Exponential back-off with jitter, and the loop that retries an action with it."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from shared.logs import Throttle

T = TypeVar("T")


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


async def retrying(
    action: Callable[[], Awaitable[T]],
    failed: Callable[[Exception], str],
    log: logging.Logger,
    *,
    backoff: Backoff | None = None,
    throttle: Throttle | None = None,
    between: Callable[[], Awaitable[None]] | None = None,
    retry_on: tuple[type[Exception], ...] = (Exception,),
    final: tuple[type[Exception], ...] = (),
) -> T:
    """``action()``, retried with ``backoff`` until it returns; its result.

    Each failure is described by ``failed(exc)`` and logged as a warning (at most once per
    ``throttle`` interval, when one is given), and ``between()`` runs before the wait. Only
    exceptions of a ``retry_on`` type are retried; those of a ``final`` type are raised at
    once (retrying would not help), as are all others.
    """
    backoff = backoff or Backoff(initial=0.2, cap=5.0)
    while True:
        try:
            return await action()
        except final:
            raise
        except retry_on as exc:
            message = failed(exc)
            if throttle is None or throttle.allow(type(exc).__name__):
                log.warning("%s", message)
        if between is not None:
            await between()
        await backoff.wait()
