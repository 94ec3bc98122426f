"""Task: find registered keys whose expiry nobody claimed, and claims that were never handled.

Redis pub/sub is fire and forget: an expiry that fires while no consumer listens is gone, a
consumer can die between claiming a key and publishing it, and JetStream with memory storage
forgets its queue when NATS restarts. Registered keys have their deadline in ``expiry:due``,
every claim holds a lease until it is handled, and this task (in every consumer; its claims
are atomic, so two sweepers never take one key twice) publishes what fell through.
Idle, a sweep is one read of two sorted sets' heads.
"""

from __future__ import annotations

import logging

import trio

from consumer.claim_store import claim_overdue, release_all, scan_overdue, take_over
from consumer.publishing import publish_claimed
from shared import telemetry
from shared.bridge import RedisGateway
from shared.lease import Lease
from shared.logs import Throttle
from shared.nats import JetStream
from shared.patterns import KeyPatterns

log = logging.getLogger(__name__)

SWEEP_LIMIT = 2000


async def run_sweeper(
    redis: RedisGateway,
    jetstream: JetStream,
    patterns: KeyPatterns,
    lease_ms: int,
    grace_ms: int,
    window_ms: int,
    interval_ms: int,
) -> None:
    """Sweep every ``interval_ms`` until cancelled; sweep again at once while work is found.

    Only keys matching ``patterns`` are taken: other fleets sharing the Redis (``FLEET``) handle
    the rest.
    """
    throttle = Throttle()
    reconnects_seen = jetstream.events.reconnects
    while True:
        await trio.sleep(interval_ms / 1000)
        try:
            if jetstream.events.reconnects != reconnects_seen:
                reconnects_seen = jetstream.events.reconnects
                await _after_nats_reconnect(redis, jetstream)
            while await sweep_once(redis, jetstream, patterns, lease_ms, grace_ms, window_ms):
                pass
        except Exception as exc:
            telemetry.ERRORS.labels("sweeper").inc()
            if throttle.allow("sweep"):
                log.warning("sweep failed: %s", exc)


async def sweep_once(
    redis: RedisGateway,
    jetstream: JetStream,
    patterns: KeyPatterns,
    lease_ms: int,
    grace_ms: int,
    window_ms: int,
) -> bool:
    """One sweep; True when it found a full batch of overdue keys (more may be waiting).

    Leases that ran out are taken over at most ``SWEEP_LIMIT`` per sweep: when the fleet is
    overloaded, republishing faster than it can publish would only add to the load.
    """
    due, stale = await scan_overdue(redis, grace_ms, SWEEP_LIMIT)
    mine = [key for key in due if patterns.matches(key)]
    recovered = 0
    if mine:
        claimed = await claim_overdue(redis, mine, lease_ms, grace_ms, window_ms)
        if claimed.members:
            await publish_claimed(redis, jetstream, claimed)
            recovered += len(claimed.members)
    stale = [m for m in stale if (lease := Lease.parse(m)) and patterns.matches(lease.key)]
    if stale:
        taken = await take_over(redis, stale, lease_ms)
        if taken.members:
            await publish_claimed(redis, jetstream, taken)
            recovered += len(taken.members)
    if recovered:
        log.info("recovered %d keys", recovered)
    return len(mine) >= SWEEP_LIMIT


async def _after_nats_reconnect(redis: RedisGateway, jetstream: JetStream) -> None:
    """A NATS restart empties a memory stream: make every claim in flight due for republishing.

    Where the queue survived, the republished copies find their leases gone once the first
    copies are handled, and are only acknowledged.
    """
    await jetstream.ensure_topology()
    released = await release_all(redis)
    if released:
        log.info("NATS reconnected: %d keys in flight will be republished", released)
