"""Task: claim each heard key exactly once across the fleet, and publish the keys won.

What it hears comes from the listener (Redis's events) and, in the lead, from the timers
(``due``: a registered deadline came).
"""

from __future__ import annotations

import logging

import trio

from consumer.claim_store import Claimed, KeyEvent, hear
from consumer.publishing import QueuedMarks, give_back, publish_claimed
from consumer.timers import Timers
from shared import telemetry
from shared.bridge import RedisGateway
from shared.logs import Throttle
from shared.nats import JetStream

log = logging.getLogger(__name__)

#: Batches of claims waiting for a publisher; beyond that they go to the sweepers.
WON_BACKLOG = 64


def take_waiting(
    first: list[KeyEvent], receive: trio.MemoryReceiveChannel[list[KeyEvent]], limit: int
) -> list[KeyEvent]:
    """``first`` plus whatever batches are already waiting, up to about ``limit`` events."""
    events = list(first)
    while len(events) < limit:
        try:
            events.extend(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return events


async def run_dedup_publisher(
    redis: RedisGateway,
    jetstream: JetStream,
    receive: trio.MemoryReceiveChannel[list[KeyEvent]],
    lease_ms: int,
    window_ms: int,
    batch_limit: int,
    timers: Timers | None = None,
    lookahead_ms: int = 0,
    publishers: int = 2,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Apply every batch of key events from the listener until its channel closes (deadlines
    registered, expiries claimed); publish what was won.

    Claiming and publishing run as separate tasks so that the next claim does not wait for
    JetStream to acknowledge the last publish. A batch whose claim fails (Redis unreachable)
    is dropped here: registered keys stay due in Redis and a sweeper claims them later;
    unregistered ones are lost with the event, as they are while no consumer listens.
    ``window_ms`` is the dedup window outside a test (a test brings its own). While this
    process fires ``timers``, the deadlines the claims saw coming within ``lookahead_ms`` are
    handed to them.
    """
    won_send, won_receive = trio.open_memory_channel[Claimed](WON_BACKLOG)
    # Well inside the claim lease, so that a claim waiting in a backlog keeps its lease.
    marks = QueuedMarks(redis, min(1.0, lease_ms / 4000))
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(marks.run)
            async with trio.open_nursery() as publishing:
                async with won_receive:
                    for _ in range(publishers):
                        publishing.start_soon(
                            _publish_won, redis, jetstream, won_receive.clone(), marks
                        )
                task_status.started()
                async with won_send, receive:
                    await _claim_heard(
                        redis,
                        receive,
                        won_send,
                        lease_ms,
                        window_ms,
                        batch_limit,
                        timers,
                        lookahead_ms,
                    )
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await marks.flush()


async def _claim_heard(
    redis: RedisGateway,
    receive: trio.MemoryReceiveChannel[list[KeyEvent]],
    won_send: trio.MemorySendChannel[Claimed],
    lease_ms: int,
    window_ms: int,
    batch_limit: int,
    timers: Timers | None,
    lookahead_ms: int,
) -> None:
    throttle = Throttle()
    async for first in receive:
        events = take_waiting(first, receive, batch_limit)
        telemetry.BATCH_SIZE.labels("claim").observe(len(events))
        firing = timers is not None and timers.active
        try:
            with telemetry.STAGE_SECONDS.labels("claim").time():
                won = await hear(redis, events, lease_ms, window_ms, lookahead_ms if firing else 0)
        except Exception as exc:
            telemetry.ERRORS.labels("dedup_publisher").inc()
            if throttle.allow("claim"):
                log.warning("claiming %d keys failed (%s); sweepers will retry", len(events), exc)
            continue
        if timers is not None and won.upcoming:
            timers.arm(won.upcoming)
        if won.members:
            try:
                won_send.send_nowait(won)
            except trio.WouldBlock:
                # The publishers are behind (NATS slow or away). Waiting for them would leave
                # the listener reading ever older events, past the dedup window; the sweepers
                # publish these claims instead, once NATS takes them.
                await give_back(redis, won.members)


async def _publish_won(
    redis: RedisGateway,
    jetstream: JetStream,
    receive: trio.MemoryReceiveChannel[Claimed],
    marks: QueuedMarks,
) -> None:
    throttle = Throttle()
    async with receive:
        async for won in receive:
            try:
                with telemetry.STAGE_SECONDS.labels("publish").time():
                    await publish_claimed(redis, jetstream, won, marks)
            except Exception as exc:  # leases still run out: sweepers republish these keys
                telemetry.ERRORS.labels("dedup_publisher").inc()
                if throttle.allow("publish"):
                    log.warning("publishing %d keys failed: %s", len(won.members), exc)
