"""Task: take claims from the JetStream work queue, run the handler on each once, then ack.

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
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from consumer import claim_store
from consumer.handler import ExpiredKey, Handler
from consumer.readiness import Readiness
from shared import names, telemetry
from shared.backoff import Backoff, retrying
from shared.bridge import RedisGateway
from shared.lease import Lease
from shared.logs import Throttle
from shared.names import SlotGroup
from shared.nats import JetStream, JetStreamMessage
from shared.nats.pull import OVERFLOW_PENDING, Feed

log = logging.getLogger(__name__)

FETCH_WAIT_S = 0.5
#: A handler that raised is tried again after this long, doubling with each delivery.
RETRY_DELAY_S = 1.0
#: While a batch takes longer than this, JetStream hears it is in progress and leases grow.
KEEPALIVE_S = 2.0

T = TypeVar("T")

# Children of labelled metrics, looked up once: the batch path runs for nearly every key.
_CONSUME_BATCH = telemetry.BATCH_SIZE.labels("consume")
_COUNT_STAGE = telemetry.STAGE_SECONDS.labels("count")
_HANDLED_OK = telemetry.HANDLED.labels("ok")


@dataclass(frozen=True)
class Delivery:
    """A message and the claim it carries."""

    message: JetStreamMessage
    claim_id: str
    deadline: str
    test_id: str

    @property
    def event(self) -> ExpiredKey:
        """What the handler is given."""
        return ExpiredKey(
            key=self.message.key,
            deadline_ms=int(self.deadline) if self.deadline else None,
            attempt=self.message.delivered,
            test_id=self.test_id or None,
            claim_id=self.claim_id,
        )


def parse_delivery(
    message: JetStreamMessage, layout: names.KeyLayout = names.SINGLE_SERVER
) -> Delivery | None:
    """The claim ``message`` carries, or None when it is malformed (a poison message)."""
    lease = Lease.parse(message.lease)
    if lease is None or lease.key != message.key:
        return None
    identity = names.claim_identity(lease.claim_id, layout.group_of(message.key))
    return Delivery(message, identity, lease.deadline, lease.test_id)


@dataclass(frozen=True)
class Counted:
    """What completing one batch did."""

    counted: int
    duplicates: int
    stale: int
    #: Why acknowledging the batch failed (NATS away: JetStream delivers it again), or None.
    ack_failed: Exception | None = None


@dataclass
class WorkerContext:
    """What every pull worker of a process shares."""

    redis: RedisGateway
    jetstream: JetStream
    consumer_id: str
    handler: Handler
    limiter: trio.CapacityLimiter
    lease_ms: int
    handler_timeout_s: float
    #: Check each claim's lease before calling the handler (not for a repeat-safe one).
    check_leases: bool = True
    #: Whether this process pulls at any rate, or only while a backlog waits (see ``Feed``).
    primary: Callable[[], bool] = lambda: True
    #: How many messages must wait before a process that is not primary gets any (0: none).
    overflow_pending: int = OVERFLOW_PENDING
    feed: SharedFeed = field(init=False)

    def __post_init__(self) -> None:
        self.feed = SharedFeed(self.jetstream, self.primary, self.overflow_pending)


class SharedFeed:
    """The pull feed all workers of a process read: one pull request open per process.

    JetStream hands each new message to the next waiting pull request in turn, so every open
    request splits a trickle of keys into smaller batches, and the cost of a batch barely
    depends on its size. With one feed, one worker handles a batch while the other waits on
    the same inbox for the next.
    """

    def __init__(
        self, jetstream: JetStream, primary: Callable[[], bool], overflow_pending: int
    ) -> None:
        self._jetstream = jetstream
        self._primary = primary
        self._overflow_pending = overflow_pending
        self._feed: Feed | None = None
        self._binding = trio.Lock()
        self._readers = 0

    async def fetch(self, batch: int, wait_s: float) -> list[JetStreamMessage]:
        """What the feed has (see ``Feed.fetch``); binds first when not bound. A failed fetch
        drops the feed, so that the next one binds again."""
        async with self._binding:
            if self._feed is None:
                self._feed = await self._jetstream.open_feed(self._primary, self._overflow_pending)
            feed = self._feed
        try:
            return await feed.fetch(batch, wait_s)
        except Exception:
            if self._feed is feed:
                self._feed = None
            await _drop(feed)
            raise

    def join(self) -> None:
        """One more worker reads this feed."""
        self._readers += 1

    async def leave(self) -> None:
        """A worker stops reading; the last one gives back what is still in the inbox."""
        self._readers -= 1
        if self._readers == 0:
            feed, self._feed = self._feed, None
            await _drop(feed)


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


async def call_handler(ctx: WorkerContext, delivery: Delivery) -> str | None:
    """Run the handler on one delivery; None when it returned, else why it failed."""
    try:
        ctx.limiter.acquire_nowait()  # no scheduling round when a slot is free
    except trio.WouldBlock:
        await ctx.limiter.acquire()
    try:
        started = time.perf_counter()
        with trio.move_on_after(ctx.handler_timeout_s) as scope:
            try:
                await ctx.handler(delivery.event)
            except Exception as exc:
                telemetry.HANDLED.labels("failed").inc()
                return f"{type(exc).__name__}: {exc}"
            finally:
                telemetry.HANDLER_SECONDS.observe(time.perf_counter() - started)
        if scope.cancelled_caught:
            telemetry.HANDLED.labels("timeout").inc()
            return f"the handler took longer than {ctx.handler_timeout_s:g} s"
    finally:
        ctx.limiter.release()
    _HANDLED_OK.inc()
    return None


#: A handler call taking longer than this waited for something: the rest of the batch then
#: runs concurrently. Quicker ones run one after the other, which costs no task per key.
INLINE_CALL_S = 0.001


async def run_handlers(ctx: WorkerContext, deliveries: Sequence[Delivery]) -> list[str | None]:
    """The handler's outcome for each delivery.

    Calls run one after the other while they are quick; once one takes longer than
    ``INLINE_CALL_S`` (it waits on I/O), the remaining ones run concurrently, at most
    ``HANDLER_CONCURRENCY`` at once per process.
    """
    outcomes: list[str | None] = [None] * len(deliveries)
    index = 0
    while index < len(deliveries):
        started = trio.current_time()
        outcomes[index] = await call_handler(ctx, deliveries[index])
        index += 1
        if trio.current_time() - started > INLINE_CALL_S:
            break
    if index == len(deliveries):
        return outcomes

    async def one(at: int) -> None:
        outcomes[at] = await call_handler(ctx, deliveries[at])

    async with trio.open_nursery() as nursery:
        for at in range(index, len(deliveries)):
            nursery.start_soon(one, at)
    return outcomes


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


async def run_pull_worker(
    ctx: WorkerContext,
    readiness: Readiness,
    stop: trio.Event,
    batch: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fetch, handle and acknowledge until ``stop`` is set; the batch in hand is finished first.

    ``started`` fires once bound to the durable consumer. A failed fetch (NATS restarted, the
    stream or consumer gone) re-creates the topology and binds again, with back-off.
    """
    throttle = Throttle()
    backoff = Backoff(initial=0.1, cap=3.0)
    started = False
    keeper = KeepAlive(ctx)
    ctx.feed.join()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(keeper.run)
            while not stop.is_set():
                try:
                    messages = await ctx.feed.fetch(batch, FETCH_WAIT_S)
                except Exception as exc:
                    readiness.bound = False
                    telemetry.ERRORS.labels("pull_worker").inc()
                    if throttle.allow("fetch"):
                        log.warning("fetching from JetStream failed (%s); binding again", exc)
                    await backoff.wait()
                    await _ensure_topology(ctx.jetstream, throttle)
                    continue
                readiness.bound = True
                backoff.reset()
                if not started:
                    started = True
                    task_status.started()
                if not messages:
                    continue
                try:
                    await handle_batch(ctx, messages, keeper)
                except Exception as exc:  # settling failed (NATS away): JetStream redelivers
                    telemetry.ERRORS.labels("pull_worker").inc()
                    if throttle.allow("settle"):
                        log.warning("settling %d messages failed (%s)", len(messages), exc)
                    await backoff.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await ctx.feed.leave()


async def _drop(feed: Feed | None) -> None:
    if feed is not None:
        try:
            await feed.close()
        except Exception as exc:
            log.debug("closing a pull feed: %s", exc)


async def _ensure_topology(jetstream: JetStream, throttle: Throttle) -> None:
    try:
        await jetstream.ensure_topology()
    except Exception as exc:
        if throttle.allow("topology"):
            log.warning("cannot re-create the JetStream stream/consumer yet: %s", exc)
