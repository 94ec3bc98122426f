"""Task: hear every Redis expiry; pass on the names matching ``KEY_PATTERNS``, a batch per read."""

from __future__ import annotations

import logging

import trio

from consumer.readiness import Readiness
from shared import telemetry
from shared.backoff import Backoff
from shared.patterns import KeyPatterns
from shared.pubsub import PubSubError, RedisAddress, Subscriber

log = logging.getLogger(__name__)


async def run_expiry_listener(
    address: RedisAddress,
    channel: str,
    patterns: KeyPatterns,
    send: trio.MemorySendChannel[list[str]],
    readiness: Readiness,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe to ``channel`` and send batches of expired keys matching ``patterns``.

    Pub/sub drops events while disconnected, so a lost connection is re-subscribed with
    back-off at once; what was missed meanwhile is the sweeper's to find. ``started`` fires
    after the first successful subscription. Closing ``send`` on exit ends the publisher.
    """
    backoff = Backoff(initial=0.05, cap=2.0)
    started = False
    async with send:
        while True:
            try:
                subscriber = await Subscriber.connect(address, channel)
            except (OSError, PubSubError) as exc:
                readiness.subscribed = False
                if backoff.attempts % 20 == 0:
                    log.warning("cannot subscribe to Redis expirations (%s); retrying", exc)
                await backoff.wait()
                continue
            readiness.subscribed = True
            log.info("subscribed to %s%s", channel, " again" if started else "")
            backoff.reset()
            if not started:
                started = True
                task_status.started()
            try:
                await _pass_on(subscriber, patterns, send)
            except (OSError, PubSubError) as exc:
                readiness.subscribed = False
                telemetry.ERRORS.labels("expiry_listener").inc()
                log.warning("Redis subscription lost (%s); resubscribing", exc)
            finally:
                readiness.subscribed = False
                with trio.CancelScope(shield=True):
                    await subscriber.aclose()


async def _pass_on(
    subscriber: Subscriber, patterns: KeyPatterns, send: trio.MemorySendChannel[list[str]]
) -> None:
    matched = telemetry.EVENTS.labels("matched")
    ignored = telemetry.EVENTS.labels("ignored")
    while True:
        payloads = await subscriber.receive_batch()
        keys = patterns.select(payloads)
        matched.inc(len(keys))
        ignored.inc(len(payloads) - len(keys))
        if keys:
            await send.send(keys)
