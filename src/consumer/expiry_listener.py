"""Task: hear every Redis expiry and pass the ``gen-key`` names on, one batch per socket read."""

from __future__ import annotations

import logging

import trio

from consumer.readiness import Readiness
from shared import telemetry
from shared.backoff import Backoff
from shared.names import parse_gen_key
from shared.pubsub import PubSubError, RedisAddress, Subscriber

log = logging.getLogger(__name__)


def select_gen_keys(payloads: list[bytes]) -> list[str]:
    """The ``gen-key:<n>`` names among expired-key payloads; everything else is ignored."""
    return [p.decode("ascii") for p in payloads if parse_gen_key(p) is not None]


async def run_expiry_listener(
    address: RedisAddress,
    channel: str,
    send: trio.MemorySendChannel[list[str]],
    readiness: Readiness,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe to ``channel`` and send batches of expired gen-keys until cancelled.

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
                await _pass_on(subscriber, send)
            except (OSError, PubSubError) as exc:
                readiness.subscribed = False
                telemetry.ERRORS.labels("expiry_listener").inc()
                log.warning("Redis subscription lost (%s); resubscribing", exc)
            finally:
                readiness.subscribed = False
                with trio.CancelScope(shield=True):
                    await subscriber.aclose()


async def _pass_on(subscriber: Subscriber, send: trio.MemorySendChannel[list[str]]) -> None:
    gen_keys = telemetry.EVENTS.labels("gen_key")
    ignored = telemetry.EVENTS.labels("ignored")
    while True:
        payloads = await subscriber.receive_batch()
        keys = select_gen_keys(payloads)
        gen_keys.inc(len(keys))
        ignored.inc(len(payloads) - len(keys))
        if keys:
            await send.send(keys)
