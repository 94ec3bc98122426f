"""One fetched batch, handled: every message ends acked, delivered again after a back-off, or
termed.

Per batch: ``BEGIN`` keeps only the claims whose lease is still held (a second delivery of a
handled claim is only acknowledged), the handler runs on each of those (concurrently, at most
``HANDLER_CONCURRENCY`` per process), ``COMPLETE`` ends the claims whose handler returned and
counts them once, and the rest are delivered again after a back-off or, after the last
delivery, recorded as dead letters.

Only a handler's own failure spends a delivery attempt. While Redis cannot be reached (or
refuses writes), the worker keeps the batch in hand, tells JetStream it is still working on it,
and retries the Redis step until it succeeds; it pulls nothing new meanwhile.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import trio

from consumer import claim_store
from consumer.delivery import Delivery, parse_delivery
from consumer.handler_calls import run_handlers
from consumer.worker_context import WorkerContext
from shared import names, telemetry
from shared.backoff import Backoff, retrying
from shared.logs import Throttle
from shared.names import SlotGroup
from shared.nats import JetStream, JetStreamMessage

log = logging.getLogger(__name__)

#: A handler that raised is tried again after this long, doubling with each delivery.
RETRY_DELAY_S = 1.0
#: While a batch takes longer than this, JetStream hears it is in progress and leases grow.
KEEPALIVE_S = 2.0

T = TypeVar("T")

# Children of labelled metrics, looked up once: the batch path runs for nearly every key.
_CONSUME_BATCH = telemetry.BATCH_SIZE.labels("consume")
_COUNT_STAGE = telemetry.STAGE_SECONDS.labels("count")


@dataclass(frozen=True)
class Counted:
    """What completing one batch did."""

    counted: int
    duplicates: int
    stale: int
    #: Why acknowledging the batch failed (NATS away: JetStream delivers it again), or None.
    ack_failed: Exception | None = None


async def begin(ctx: WorkerContext, deliveries: Sequence[Delivery]) -> list[int]:
    """Per delivery: 1 handle it, 0 handled already, 2 an earlier test's (see ``BEGIN``)."""
    parts = _by_group(ctx, deliveries)
    leases = {group: [d.message.lease for d in part] for group, part in parts.items()}
    replies = await claim_store.begin(ctx.redis, ctx.lease_ms, leases)
    by_delivery = {
        id(d): state
        for part, reply in zip(parts.values(), replies, strict=True)
        for d, state in zip(part, reply, strict=True)
    }
    return [by_delivery[id(d)] for d in deliveries]


def _by_group(
    ctx: WorkerContext, deliveries: Sequence[Delivery]
) -> dict[SlotGroup, list[Delivery]]:
    return ctx.redis.layout.split(deliveries, lambda delivery: delivery.message.key)


async def complete(
    ctx: WorkerContext, deliveries: Sequence[Delivery], ack: Sequence[JetStreamMessage]
) -> Counted:
    """End the claims of ``deliveries`` and count each once (the idempotent COMPLETE script),
    then acknowledge ``ack``. What acknowledging raised is returned (``ack_failed``), since
    the claims are counted by then."""
    now_ms = int(time.time() * 1000)
    leases = {
        group: [d.message.lease for d in part] for group, part in _by_group(ctx, deliveries).items()
    }
    replies = await claim_store.complete(ctx.redis, ctx.consumer_id, leases)
    ack_failed: Exception | None = None
    try:
        await ctx.jetstream.ack(ack)
    except Exception as exc:  # counted already: completing again would count nothing
        ack_failed = exc
    counted, duplicates, stale = [sum(column) for column in zip(*replies, strict=True)] or [0, 0, 0]
    for d in deliveries:
        if d.deadline:
            telemetry.CONSUMPTION_DELAY.observe(max(0, now_ms - int(d.deadline)) / 1000)
    telemetry.observe_lateness("completed", (d.deadline for d in deliveries))
    return Counted(counted, duplicates, stale, ack_failed)


async def record_dead_letters(
    ctx: WorkerContext, given_up: Sequence[tuple[JetStreamMessage, str]]
) -> int:
    """Record messages given up on, with the reason: counted and visible, never lost silently."""
    now = time.time()
    per_group: dict[SlotGroup, list[str | int]] = {}
    for message, reason in given_up:
        delivery = parse_delivery(message, ctx.redis.layout)
        record = {
            "key": message.key[:200],
            "test_id": delivery.test_id if delivery else "",
            "claim_id": delivery.claim_id if delivery else "",
            "attempts": message.delivered,
            "error": reason[:500],
            "at": round(now, 3),
        }
        log.error(
            "dead letter: key %r after %d deliveries: %s",
            message.key[:200],
            message.delivered,
            reason[:500],
        )
        group = ctx.redis.layout.group_of(message.key)
        per_group.setdefault(group, [names.DEAD_LETTERS_KEPT])
        per_group[group] += [
            delivery.message.lease if delivery else "",
            message.key[:200],
            delivery.test_id if delivery else "",
            json.dumps(record),
        ]
    recorded = await claim_store.dead_letter(ctx.redis, per_group)
    telemetry.DEAD_LETTERS.inc(recorded)
    return recorded


async def until_done(
    ctx: WorkerContext,
    held: Sequence[JetStreamMessage],
    what: str,
    step: Callable[[], Awaitable[T]],
) -> T:
    """Run the Redis ``step`` until it succeeds, keeping ``held`` messages alive meanwhile.

    A Redis outage is a state, not a failure of the messages: no delivery attempt is spent.
    """
    last_keepalive = trio.current_time()

    def failed(exc: Exception) -> str:
        telemetry.ERRORS.labels("pull_worker").inc()
        return f"{what} for {len(held)} keys failed ({exc}); holding them and retrying"

    async def keep_alive() -> None:
        nonlocal last_keepalive
        if trio.current_time() - last_keepalive >= KEEPALIVE_S:
            last_keepalive = trio.current_time()
            await _still_working(ctx.jetstream, held)

    return await retrying(
        step,
        failed,
        log,
        backoff=Backoff(initial=0.1, cap=2.0),
        throttle=Throttle(),
        between=keep_alive,
    )


async def _still_working(jetstream: JetStream, held: Sequence[JetStreamMessage]) -> None:
    try:
        await jetstream.in_progress(held)
    except Exception as exc:  # NATS away too: JetStream redelivers later, the lease decides
        log.debug("cannot tell JetStream %d messages are in progress: %s", len(held), exc)


class KeepAlive:
    """Keeps the batch a worker holds alive while its handlers run long: its messages in
    progress at JetStream, its leases held.

    One task per worker, asleep under a deadline that each batch moves: no task started and
    cancelled per batch (at one key per ms nearly every batch is of one key).
    """

    def __init__(self, ctx: WorkerContext) -> None:
        self._ctx = ctx
        self._held: Sequence[Delivery] = ()
        self._due = math.inf
        self._sleep = trio.CancelScope()

    def hold(self, deliveries: Sequence[Delivery]) -> None:
        """``deliveries`` are in hand from now on."""
        self._held = deliveries
        self._due = self._sleep.deadline = trio.current_time() + KEEPALIVE_S

    def release(self) -> None:
        """Nothing is in hand any more."""
        self._held = ()
        self._due = self._sleep.deadline = math.inf

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled."""
        task_status.started()
        while True:
            self._sleep = trio.CancelScope(deadline=self._due)
            with self._sleep:
                await trio.sleep_forever()
            deliveries = self._held
            if not deliveries:
                continue
            self._due = trio.current_time() + KEEPALIVE_S
            await _still_working(self._ctx.jetstream, [d.message for d in deliveries])
            try:
                await begin(self._ctx, deliveries)
            except Exception as exc:
                log.debug("cannot extend %d leases: %s", len(deliveries), exc)


async def handle_batch(
    ctx: WorkerContext, messages: list[JetStreamMessage], keeper: KeepAlive
) -> None:
    """Handle one fetch: every message ends acked, delivered again after a back-off, or termed.

    ``keeper`` keeps the messages alive while their handlers run long.
    """
    _CONSUME_BATCH.observe(len(messages))
    if any(m.delivered > 1 for m in messages):
        telemetry.REDELIVERIES.inc(sum(1 for m in messages if m.delivered > 1))
    deliveries: list[Delivery] = []
    poison: list[JetStreamMessage] = []
    for message in messages:
        delivery = parse_delivery(message, ctx.redis.layout)
        if delivery is None:
            poison.append(message)
        else:
            deliveries.append(delivery)
    if poison:
        given_up = [(m, "malformed message: no valid claim") for m in poison]
        await until_done(
            ctx, poison, "recording dead letters", lambda: record_dead_letters(ctx, given_up)
        )
        await ctx.jetstream.term(poison)
    if not deliveries:
        return
    telemetry.observe_lateness("pulled", (d.deadline for d in deliveries))
    held = [d.message for d in deliveries]
    if ctx.check_leases:
        states = await until_done(ctx, held, "checking leases", lambda: begin(ctx, deliveries))
    else:  # a repeat-safe handler: completing decides what counts
        states = [1] * len(deliveries)
    live = [d for d, state in zip(deliveries, states, strict=True) if state == 1]
    settled = [d.message for d, state in zip(deliveries, states, strict=True) if state != 1]
    if settled:
        telemetry.DUPLICATES.inc(sum(1 for s in states if s == 0))
        telemetry.STALE.inc(sum(1 for s in states if s == 2))
    if not live:
        await ctx.jetstream.ack(settled)
        return
    keeper.hold(live)
    try:
        outcomes = await run_handlers(ctx, live)
        done = [d for d, failure in zip(live, outcomes, strict=True) if failure is None]
        failed = [(d, f) for d, f in zip(live, outcomes, strict=True) if f is not None]
        ack = [*settled, *(d.message for d in done)]
        result = None
        if done:
            with _COUNT_STAGE.time():
                result = await until_done(
                    ctx, [d.message for d in done], "completing", lambda: complete(ctx, done, ack)
                )
            telemetry.CONSUMED.inc(result.counted)
            telemetry.DUPLICATES.inc(result.duplicates)
            telemetry.STALE.inc(result.stale)
        last = [(d.message, f) for d, f in failed if d.message.delivered >= names.MAX_DELIVER]
        if last:
            await until_done(
                ctx,
                [m for m, _ in last],
                "recording dead letters",
                lambda: record_dead_letters(ctx, last),
            )
    finally:
        keeper.release()
    if result is None:
        await ctx.jetstream.ack(ack)
    elif result.ack_failed is not None:
        raise result.ack_failed
    for d, failure in failed:
        if d.message.delivered < names.MAX_DELIVER:
            log.info(
                "handler failed on %r (delivery %d): %s; retrying",
                d.message.key[:200],
                d.message.delivered,
                failure[:500],
            )
            await ctx.jetstream.nak(
                [d.message], delay=RETRY_DELAY_S * 2 ** (d.message.delivered - 1)
            )
    if last:
        await ctx.jetstream.term([m for m, _ in last])
