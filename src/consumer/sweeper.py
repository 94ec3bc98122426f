"""Task: find keys whose expiry nobody claimed, or whose claimer never got them consumed.

Redis pub/sub is fire and forget: an expiry that fires while no consumer listens is gone, a
consumer can die between claiming a key and publishing it, and JetStream with memory storage
forgets its queue when NATS restarts. The generator records each key's deadline, claims keep
each key in flight under a lease until it is counted, and this task (in every consumer; the
SWEEP script is atomic, so they never claim a key twice) republishes what fell through.
Idle, a sweep is two range reads on empty or small sorted sets.
"""

from __future__ import annotations

import logging

import trio

from consumer.publishing import publish_claimed, sweep
from shared import names, scripts, telemetry
from shared.bridge import JetStream, RedisGateway
from shared.logs import Throttle

log = logging.getLogger(__name__)

SWEEP_LIMIT = 2000


async def run_sweeper(
    redis: RedisGateway,
    jetstream: JetStream,
    lease_ms: int,
    grace_ms: int,
    interval_ms: int,
) -> None:
    """Sweep every ``interval_ms`` until cancelled; sweep again at once while work is found."""
    throttle = Throttle()
    reconnects_seen = jetstream.events.reconnects
    while True:
        await trio.sleep(interval_ms / 1000)
        try:
            if jetstream.events.reconnects != reconnects_seen:
                reconnects_seen = jetstream.events.reconnects
                await _after_nats_reconnect(redis, jetstream)
            while True:
                test_id, claimed = await sweep(redis, lease_ms, grace_ms, SWEEP_LIMIT)
                if not claimed:
                    break
                published = await publish_claimed(redis, jetstream, test_id, claimed)
                log.info("recovered %d keys (%d published)", len(claimed), published)
                if len(claimed) < SWEEP_LIMIT:
                    break
        except Exception as exc:
            telemetry.ERRORS.labels("sweeper").inc()
            if throttle.allow("sweep"):
                log.warning("sweep failed: %s", exc)


async def _after_nats_reconnect(redis: RedisGateway, jetstream: JetStream) -> None:
    """A NATS restart empties a memory stream: make every key in flight due for republishing.

    Where the queue survived, JetStream drops the republished copies by their message ids.
    """
    await jetstream.ensure_topology()
    released = await redis.script(scripts.RELEASE_ALL, (names.TEST_INFLIGHT,), [])
    if released:
        log.info("NATS reconnected: %d keys in flight will be republished", released)
