"""Publish the claims won to JetStream (publisher and sweeper), marking them queued or
giving them back (``consumer.claim_store``)."""

from __future__ import annotations

import logging

import trio

from consumer.claim_store import Claimed, mark_queued, release
from shared import names, telemetry
from shared.bridge import RedisGateway
from shared.lease import Lease, deadline_of
from shared.logs import Throttle
from shared.names import KeyLayout
from shared.nats import JetStream

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 3
#: JetStream's refusals (a full store refuses every batch alike): each reason once per 5 s.
_REFUSALS = Throttle()


def message_of(
    member: str, generation: str, layout: KeyLayout = names.SINGLE_SERVER
) -> tuple[str, dict[str, str]]:
    """The body (the key) and headers (message id, claim) of the message carrying a claim."""
    lease = Lease.parse(member)
    if lease is None:
        raise ValueError(f"malformed lease {member[:200]!r}")
    return lease.key, {
        "Nats-Msg-Id": names.msg_id(lease.claim_id, generation, layout.group_of(lease.key)),
        names.CLAIM_HEADER: lease.header,
    }


#: How long a claim whose message JetStream stored may stay unhandled before a sweeper
#: republishes it (covers a message lost without NATS saying so; not a backlog).
QUEUED_LEASE_MS = 300_000


class QueuedMarks:
    """Claims JetStream stored, marked as queued (``MARK_QUEUED``) a little later, together.

    Marking only lengthens the lease of a claim whose message waits in a backlog; most claims
    are completed within milliseconds, and marking a completed one does nothing. So one call
    every ``every_s`` (well inside the claim lease) replaces a Redis round trip, and the
    wake-up for its reply, per published batch. A mark that comes too late costs at most a
    second publication of the claim, which is only acknowledged.
    """

    #: Marked at once beyond this many, to keep each script call short.
    MAX_PENDING = 2000

    def __init__(self, redis: RedisGateway, every_s: float) -> None:
        self._redis = redis
        self.every_s = every_s
        self._pending: list[str] = []

    async def add(self, members: list[str]) -> None:
        """Mark ``members`` soon (now, when many are waiting)."""
        self._pending += members
        if len(self._pending) >= self.MAX_PENDING:
            await self.flush()

    async def flush(self) -> None:
        """Mark every member waiting now."""
        members, self._pending = self._pending, []
        await _mark_queued(self._redis, members)

    async def run(self) -> None:
        """Flush every ``every_s`` until cancelled."""
        while True:
            await trio.sleep(self.every_s)
            if self._pending:
                await self.flush()


async def publish_claimed(
    redis: RedisGateway, jetstream: JetStream, claimed: Claimed, marks: QueuedMarks | None = None
) -> int:
    """Publish claims; return how many JetStream stored.

    A failed publish is retried (re-creating the stream if it vanished); claims that still fail
    get their lease ended so that any consumer's sweeper takes them over and publishes them:
    a won key is never dropped. Stored claims are marked as queued by ``marks``, or at once.
    """
    remaining = list(claimed.members)
    for attempt in range(PUBLISH_ATTEMPTS):
        if attempt:
            await trio.sleep(0.2 * attempt)
        if not jetstream.is_connected:
            continue  # publishing now would only wait for the reconnect
        items = [message_of(member, claimed.generation, redis.layout) for member in remaining]
        try:
            refusals = await jetstream.publish_batch(items)
        except Exception as exc:
            refusals = [f"publishing failed: {exc}"] * len(items)
        stored = [member for member, why in zip(remaining, refusals, strict=True) if why is None]
        remaining = [member for member, why in zip(remaining, refusals, strict=True) if why]
        reasons = "; ".join(sorted({why for why in refusals if why})) if remaining else ""
        if reasons and _REFUSALS.allow(reasons):
            log.warning(
                "JetStream did not take %d of %d keys: %s", len(remaining), len(items), reasons
            )
        telemetry.PUBLISHED.labels("ok").inc(len(stored))
        telemetry.observe_lateness("published", map(deadline_of, stored))
        if marks is None:
            await _mark_queued(redis, stored)
        else:
            await marks.add(stored)
        if not remaining:
            return len(claimed.members)
        telemetry.PUBLISHED.labels("failed").inc(len(remaining))
        try:  # the stream may have vanished (a NATS restart with memory storage)
            await jetstream.ensure_topology()
        except Exception as exc:
            log.warning("cannot check the JetStream stream: %s", exc)
    await give_back(redis, remaining)
    return len(claimed.members) - len(remaining)


async def give_back(redis: RedisGateway, members: list[str]) -> None:
    """End the leases of claims this process will not publish: any sweeper takes them now."""
    log.warning("giving %d unpublished keys back to the sweepers", len(members))
    try:
        await release(redis, members)
    except Exception as exc:
        # Their leases still run out by themselves; the sweepers take them then.
        log.warning(
            "cannot release %d keys early (%s); their leases will expire", len(members), exc
        )


async def _mark_queued(redis: RedisGateway, members: list[str]) -> None:
    if not members:
        return
    try:
        await mark_queued(redis, members, QUEUED_LEASE_MS)
    except Exception as exc:  # the short lease stands: at worst a harmless second publication
        log.warning("cannot mark %d published keys as queued: %s", len(members), exc)
