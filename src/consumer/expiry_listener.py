"""Task: hear what Redis says of the keys matching ``KEY_PATTERNS`` (their expiries, and with
``g`` in notify-keyspace-events their deadlines armed, moved and cancelled); a batch per read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack

import trio

from consumer.claim_store import KeyEvent
from consumer.readiness import Readiness
from shared import names, telemetry
from shared.backoff import Backoff
from shared.patterns import KeyPatterns
from shared.redis.pubsub import PubSubError, RedisAddress, Subscription, open_subscription

log = logging.getLogger(__name__)


async def run_expiry_listener(
    address: RedisAddress,
    channel: str,
    patterns: KeyPatterns,
    send: trio.MemorySendChannel[list[KeyEvent]],
    readiness: Readiness,
    stall_s: float = 2.5,
    holding: Callable[[], bool] = lambda: True,
    pace: Callable[[], float] = lambda: 0.0,
    events: frozenset[str] = frozenset({names.EXPIRED_EVENT}),
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Subscribe to ``channel`` (on every master of a cluster) and send batches of the
    ``events`` (``expired``, and the deadline events when they are followed) of keys matching
    ``patterns``, in the order heard.

    Pub/sub drops events while disconnected, so a lost connection is re-subscribed with
    back-off at once; what was missed meanwhile is the sweeper's to find. ``started`` fires
    after the first successful subscription. Closing ``send`` on exit ends the publisher.

    A process frozen for longer than ``stall_s`` (a VM or GC pause, SIGSTOP) finds old events
    waiting in its socket. Other listeners handled them meanwhile, and once their dedup records
    expire they would be claimed a second time: so the backlog is dropped and the listener
    subscribes afresh (registered keys among them, if nobody else claimed them, are the
    sweepers'). ``stall_s`` must stay below the dedup window.

    ``holding`` says whether this consumer still holds its listener slot; once it does not
    (its lease ran out while it was frozen or cut off from Redis), the listener returns.
    ``pace`` is how long to let events gather after each batch (0: read them as they come).
    """
    backoff = Backoff(initial=0.05, cap=2.0)
    started = False
    async with send:
        while True:
            async with AsyncExitStack() as stack:  # leaving it closes the subscription
                try:
                    subscription = await stack.enter_async_context(
                        open_subscription(address, channel)
                    )
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
                    await _pass_on(subscription, patterns, send, stall_s, holding, pace, events)
                except SlotLost:
                    log.info("the listener slot's lease ran out; no longer listening")
                    return
                except Stalled as exc:
                    readiness.subscribed = False
                    telemetry.ERRORS.labels("expiry_listener").inc()
                    log.warning("%s; dropping the events read meanwhile and resubscribing", exc)
                except (OSError, PubSubError) as exc:
                    readiness.subscribed = False
                    telemetry.ERRORS.labels("expiry_listener").inc()
                    log.warning("Redis subscription lost (%s); resubscribing", exc)
                finally:
                    readiness.subscribed = False


class Stalled(Exception):
    """This process did not run for a while: what its socket holds is old."""


class SlotLost(Exception):
    """The listener slot's lease ran out: another consumer may be listening in it now."""


async def _pass_on(
    subscription: Subscription,
    patterns: KeyPatterns,
    send: trio.MemorySendChannel[list[KeyEvent]],
    stall_s: float,
    holding: Callable[[], bool],
    pace: Callable[[], float],
    events: frozenset[str],
) -> None:
    """Forward batches until the subscription fails, the process stalls or the slot is lost."""
    matched = telemetry.EVENTS.labels("matched")
    ignored = telemetry.EVENTS.labels("ignored")
    clock = _StallClock(stall_s)
    wanted = frozenset(event.encode() for event in events)
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock.tick)
        try:
            while True:
                heard = await subscription.receive_batch()
                clock.check()
                if not holding():
                    raise SlotLost
                selected = patterns.select_events(heard, wanted)
                matched.inc(len(selected))
                ignored.inc(len(heard) - len(selected))
                if selected:
                    await send.send(selected)
                if wait_s := pace():
                    await trio.sleep(wait_s)
        except (OSError, PubSubError, Stalled, SlotLost) as exc:
            failure = exc  # raised below, outside the nursery, as itself
        nursery.cancel_scope.cancel()
    assert failure is not None
    raise failure


class _StallClock:
    """Notices when the process stopped running for longer than ``stall_s``."""

    TICK_S = 0.1

    def __init__(self, stall_s: float) -> None:
        self._stall_s = stall_s
        self._last = trio.current_time()
        self._stalled_for = 0.0

    async def tick(self) -> None:
        while True:
            await trio.sleep(self.TICK_S)
            now = trio.current_time()
            self._stalled_for = max(self._stalled_for, now - self._last - self.TICK_S)
            self._last = now

    def check(self) -> None:
        stalled_for = max(self._stalled_for, trio.current_time() - self._last - self.TICK_S)
        if stalled_for > self._stall_s:
            raise Stalled(f"this process was stopped for {stalled_for:.1f} s")
