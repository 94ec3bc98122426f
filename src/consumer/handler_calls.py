"""Calling the handler on a batch's deliveries: inline while calls are quick, concurrently
(within the process's limit) once one waits."""

from __future__ import annotations

import time
from collections.abc import Sequence

import trio

from consumer.delivery import Delivery
from consumer.worker_context import WorkerContext
from shared import telemetry

_HANDLED_OK = telemetry.HANDLED.labels("ok")


async def call_handler(ctx: WorkerContext, delivery: Delivery) -> str | None:
    """Run the handler on one delivery; None when it returned, else why it failed."""
    try:
        ctx.limiter.acquire_nowait()  # no scheduling round when a slot is free
    except trio.WouldBlock:
        await ctx.limiter.acquire()
    try:
        telemetry.observe_lateness("started", (delivery.deadline,))
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
