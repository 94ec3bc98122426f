"""Task: make Redis announce the expiries of registered keys on time.

Redis announces an expiry when it deletes the key: when the key is accessed, or when its
active expire cycle (``hz`` times a second) happens to sample it. Among the thousands of
live dedup records (each claim keeps one for the dedup window) the cycle finds a due key
late: at 1 key per ms and a 5 s window, Redis's own announcement lag to a plain subscriber
was p50 60 / p99 198 ms (measured; 9 / 24 ms with a 300 ms window). Registered keys have
their deadline in ``expiry:due``, so this task touches each (``EXISTS``) once its deadline
has passed: Redis deletes it and announces it at once.

One round trip per round: it touches the keys that fell due since the last round (known
from that round's read) and reads the registry from ``RECENT_MS`` ago to ``LOOKAHEAD_MS``
ahead. It wakes only when something falls due, every ``interval_ms`` at most (``IDLE_S``
while nothing is due soon), and a full page means a burst, in which the expire cycle is
busy anyway: then it waits ``BUSY_S``. Keys overdue by more than ``RECENT_MS`` are left to
the expire cycle and the sweepers. One listener does it (the one in slot 0); it only makes
announcements come sooner, claims stay atomic.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from shared import names, telemetry
from shared.bridge import RedisGateway
from shared.logs import Throttle

log = logging.getLogger(__name__)

#: Registry entries read per slot group and round, at most.
PAGE = 500
RECENT_MS = 1000
LOOKAHEAD_MS = 100
BUSY_S = 0.1
IDLE_S = 0.1


class Nudger:
    """The registry's entries around now, and the rounds that touch them when due."""

    def __init__(self, redis: RedisGateway) -> None:
        self._redis = redis
        self._registries = [group.name(names.EXPIRY_DUE) for group in redis.layout.groups]
        #: Key -> deadline (unix ms), as last read.
        self.known: dict[str, float] = {}

    async def round(self) -> float:
        """Touch what fell due, read what comes; how long to wait for the next round."""
        now_ms = time.time() * 1000
        due = [key for key, deadline in self.known.items() if deadline <= now_ms]
        commands: list[tuple[str | int, ...]] = [("EXISTS", key) for key in due]
        window = (int(now_ms) - RECENT_MS, int(now_ms) + LOOKAHEAD_MS)
        commands += [
            ("ZRANGEBYSCORE", registry, *window, "WITHSCORES", "LIMIT", 0, PAGE)
            for registry in self._registries
        ]
        replies = await self._redis.commands(commands)
        pages = [_pairs(page) for page in replies[len(due) :]]
        self.known = {key: deadline for page in pages for key, deadline in page}
        if any(len(page) >= PAGE for page in pages):
            return BUSY_S
        upcoming = [deadline for deadline in self.known.values() if deadline > now_ms]
        if len(upcoming) < len(self.known):
            return 0.0  # due already (touched now, or a moment ago): touch again soon
        return min(IDLE_S, (min(upcoming, default=now_ms + IDLE_S * 1000) - now_ms) / 1000)


async def run_nudger(redis: RedisGateway, interval_ms: int) -> None:
    """Touch registered keys as they fall due, every ``interval_ms`` at most, until cancelled."""
    throttle = Throttle()
    nudger = Nudger(redis)
    interval_s = interval_ms / 1000
    while True:
        try:
            wait_s = await nudger.round()
        except Exception as exc:  # Redis away: the listener and the sweepers say so
            telemetry.ERRORS.labels("nudger").inc()
            if throttle.allow("nudge"):
                log.warning("cannot touch due keys (%s); retrying", exc)
            wait_s = BUSY_S
        await trio.sleep(max(interval_s, wait_s))


def _pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """(member, score) pairs of a ``WITHSCORES`` reply: flat as Redis sends it, or pairs
    already through redis-py (on a cluster)."""
    if reply and isinstance(reply[0], (list, tuple)):
        return [(str(member), float(score)) for member, score in reply]
    return [(str(reply[i]), float(reply[i + 1])) for i in range(0, len(reply), 2)]
