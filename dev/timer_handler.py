"""A handler for the timer tests and benchmark: one record per call, so that a key handled
twice shows twice.

Consumers load it with ``HANDLER=dev.timer_handler:record``; each call appends a JSON record
(key, deadline, claim id, when) to the list ``timers:handled`` through its own connection.
"""

from __future__ import annotations

import json
import os
import time

import trio

from consumer.handler import ExpiredKey
from shared.bridge import RedisGateway

#: List of JSON records, one per handler call.
HANDLED = "timers:handled"

_redis: RedisGateway | None = None
_connecting = trio.Lock()


async def record(event: ExpiredKey) -> None:
    """Append what was handled, and when (unix ms)."""
    global _redis
    async with _connecting:
        if _redis is None:
            _redis = await RedisGateway.connect(os.environ["REDIS_URL"])
    entry = {
        "key": event.key,
        "deadline_ms": event.deadline_ms,
        "claim_id": event.claim_id,
        "handled_at_ms": round(time.time() * 1000, 3),
    }
    await _redis.commands([("RPUSH", HANDLED, json.dumps(entry))])  # from trio, one server
