"""Task: make Redis announce the expiries of registered keys on time.

Redis announces an expiry when it deletes the key: when the key is accessed, or when its
active expire cycle (``hz`` times a second) happens to sample it. Among the thousands of
live dedup records (each claim keeps one for the dedup window) the cycle finds a due key
late: at 1 key per ms and a 5 s window, Redis's own announcement lag to a plain subscriber
was p50 60 / p99 198 ms (measured; 9 / 24 ms with a 300 ms window). Registered keys have
their deadline in ``expiry:due``: every ``interval_ms`` this task reads those just past it
and touches them (``EXISTS``), so Redis deletes them and announces them at once.

One listener does it (the one in slot 0). It only makes the announcement come sooner;
claiming stays the listeners' and sweepers' atomic business. Keys overdue by more than
``RECENT_MS`` are left to the expire cycle and the sweepers, and a full page means a burst,
in which the cycle is busy expiring anyway: then it waits ``BUSY_S``.
"""

from __future__ import annotations

import logging
import time

import trio

from shared import names, telemetry
from shared.bridge import RedisGateway
from shared.logs import Throttle

log = logging.getLogger(__name__)

#: Keys touched per slot group and round, at most.
PAGE = 100
RECENT_MS = 1000
BUSY_S = 0.1


async def run_nudger(redis: RedisGateway, interval_ms: int) -> None:
    """Touch registered keys just past their deadline every ``interval_ms`` until cancelled."""
    throttle = Throttle()
    registries = [group.name(names.EXPIRY_DUE) for group in redis.layout.groups]
    while True:
        try:
            full = await nudge_once(redis, registries)
        except Exception as exc:  # Redis away: the listener and the sweepers say so
            telemetry.ERRORS.labels("nudger").inc()
            if throttle.allow("nudge"):
                log.warning("cannot read due keys (%s); retrying", exc)
            full = True
        await trio.sleep(BUSY_S if full else interval_ms / 1000)


async def nudge_once(redis: RedisGateway, registries: list[str]) -> bool:
    """One round; True when a page was full."""
    now_ms = int(time.time() * 1000)
    pages = await redis.commands(
        [
            ("ZRANGEBYSCORE", registry, now_ms - RECENT_MS, now_ms, "LIMIT", 0, PAGE)
            for registry in registries
        ]
    )
    due = [key for page in pages for key in page]
    if due:
        await redis.commands([("EXISTS", key) for key in due])
    return any(len(page) >= PAGE for page in pages)
