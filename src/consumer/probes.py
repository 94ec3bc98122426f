"""Task: measure what the alerts watch — Redis and NATS reachable, the work queue's depth.

Every consumer reports the same JetStream consumer's counts; dashboards take ``max`` over
consumers. A probe that does not answer within its timeout counts as down, so an alert fires
while Redis or NATS hangs, not only when it refuses connections.
"""

from __future__ import annotations

import logging

import trio

from shared import telemetry
from shared.bridge import RedisGateway
from shared.nats import JetStream

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 2.0


async def probe_once(redis: RedisGateway, jetstream: JetStream) -> None:
    """PING Redis and read the JetStream consumer's state; set the gauges from the answers."""
    redis_up = False
    with trio.move_on_after(PROBE_TIMEOUT_S):
        try:
            redis_up = await redis.call("PING") in (True, "PONG")
        except Exception as exc:
            log.debug("Redis probe failed: %s", exc)
    telemetry.REDIS_UP.set(1 if redis_up else 0)
    state: dict[str, int] | None = None
    if jetstream.is_connected:
        with trio.move_on_after(PROBE_TIMEOUT_S):
            try:
                state = await jetstream.consumer_state()
            except Exception as exc:
                log.debug("JetStream probe failed: %s", exc)
    telemetry.NATS_UP.set(0 if state is None else 1)
    if state is not None:
        telemetry.JETSTREAM_PENDING.set(state["num_pending"])
        telemetry.JETSTREAM_ACK_PENDING.set(state["num_ack_pending"])
        telemetry.JETSTREAM_REDELIVERED.set(state["num_redelivered"])


async def run_probes(
    redis: RedisGateway,
    jetstream: JetStream,
    consumer_id: str,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Probe every ``PROBE_INTERVAL_S`` until cancelled; ``started`` after the first probe."""
    telemetry.CONSUMER_INFO.labels(consumer_id).set(1)
    await probe_once(redis, jetstream)
    task_status.started()
    while True:
        await trio.sleep(PROBE_INTERVAL_S)
        await probe_once(redis, jetstream)
