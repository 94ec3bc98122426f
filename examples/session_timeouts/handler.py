"""The handler: when a session's key expires, write one audit record for it.

The consumer calls ``audit`` once per expired ``session:<id>`` key (HANDLER=
examples.session_timeouts.handler:audit). It writes with its own Redis connection, keyed by
the claim id, so that even a retried call leaves exactly one record.
"""

from __future__ import annotations

import json
import os
import time

import trio

from consumer.handler import ExpiredKey
from shared.bridge import RedisGateway

#: Hash session key -> JSON audit record (one field per session that timed out).
AUDIT_KEY = "audit:session-timeouts"

_redis: RedisGateway | None = None
_connecting = trio.Lock()


async def _connection() -> RedisGateway:
    global _redis
    async with _connecting:
        if _redis is None:
            _redis = await RedisGateway.connect(
                os.environ.get("AUDIT_REDIS_URL") or os.environ["REDIS_URL"]
            )
    return _redis


async def audit(event: ExpiredKey) -> None:
    """Record that ``event.key``'s session timed out (once, whatever the retries)."""
    record = {
        "session": event.key.removeprefix("session:"),
        "claim_id": event.claim_id,
        "deadline_ms": event.deadline_ms,
        "handled_at_ms": int(time.time() * 1000),
        "attempt": event.attempt,
    }
    redis = await _connection()
    await redis.call("HSETNX", AUDIT_KEY, event.key, json.dumps(record))
