"""Task: take claims from the JetStream work queue and handle them a batch at a time
(``consumer.batch``), until told to stop."""

from __future__ import annotations

import logging

import trio

from consumer.batch import KeepAlive, handle_batch
from consumer.readiness import Readiness
from consumer.worker_context import WorkerContext
from shared import telemetry
from shared.backoff import Backoff
from shared.logs import Throttle
from shared.nats import JetStream

log = logging.getLogger(__name__)

FETCH_WAIT_S = 0.5


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


async def _ensure_topology(jetstream: JetStream, throttle: Throttle) -> None:
    try:
        await jetstream.ensure_topology()
    except Exception as exc:
        if throttle.allow("topology"):
            log.warning("cannot re-create the JetStream stream/consumer yet: %s", exc)
