"""Task: hold one of the fleet's listener slots when one is free; listen only while holding it.

Only ``EXPIRY_LISTENERS`` consumers hear expiries and claim at any moment; the whole fleet
works the JetStream queue. So the fleet's cost per key does not grow with its size: adding
consumers adds workers, not listeners. Slots are leases in Redis (``HOLD_SLOT``), renewed every
third of their life. A consumer that dies or freezes keeps its slot until the lease runs out;
a waiting consumer takes it at its next try, so a slot stays empty for at most about
``LISTENER_LEASE_MS`` plus a third of it. A stopping consumer gives its slot back at once.

Correctness never rests on these leases (claims are atomic whoever listens); they only keep
the number of listeners, and so the fleet's cost, down. A listener that finds its lease ran out
(it was frozen) stops listening before it claims anything more. One that cannot ask Redis, or
whose question Redis has not answered yet (however long a failover takes), goes on listening
until Redis answers that another consumer holds its slot: on a Redis
Cluster the master holding the slots may be failing over while the others still announce
expiries, and an unregistered key whose expiry nobody hears is lost. At worst a slot then has
two listeners for a while: twice the cost, never a second claim.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from consumer.readiness import Readiness
from shared import names, scripts, telemetry
from shared.bridge import RedisGateway
from shared.logs import Throttle

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """The listener slot this consumer holds, as far as it knows."""

    index: int = -1
    #: Until when (trio clock) the lease is surely ours.
    valid_until: float = 0.0
    #: A renewal was sent and Redis has not answered yet (a failover, an outage): until it
    #: answers, nothing says the slot was taken, however long that lasts.
    unanswered: bool = False

    def held(self) -> bool:
        """Whether this consumer may listen now."""
        return self.index >= 0 and (self.unanswered or trio.current_time() < self.valid_until)


@dataclass
class _Listening:
    """The listening task: its cancel scope, and whether it ended by itself."""

    scope: trio.CancelScope
    ended: bool = False


Listen = Callable[[Slot], Awaitable[None]]


async def run_listener_quorum(
    redis: RedisGateway,
    fleet: str,
    slots: int,
    consumer_id: str,
    lease_ms: int,
    listen: Listen,
    readiness: Readiness,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``listen`` while this consumer holds a slot, until cancelled; then give it back.

    ``slots == 0`` means every consumer listens, always. ``started`` once the first try to
    take a slot is over (whether or not one was free).
    """
    if slots <= 0:
        readiness.listener = True
        task_status.started()
        await listen(Slot(0, math.inf))
        return
    keys = [*(names.listener_slot(fleet, i) for i in range(slots)), names.listeners_held(fleet)]
    slot = Slot()
    throttle = Throttle()
    started = False
    listening: _Listening | None = None
    try:
        async with trio.open_nursery() as nursery:
            while True:
                if listening is not None and listening.ended:
                    # It stopped by itself (it found its lease had run out): listen again
                    # only once Redis gives this consumer a slot again.
                    listening = None
                    slot.index = -1
                asked = trio.current_time()
                slot.unanswered = listening is not None
                try:
                    index = await redis.script(scripts.HOLD_SLOT, keys, [consumer_id, lease_ms])
                except Exception as exc:
                    readiness.redis_ok = False
                    telemetry.ERRORS.labels("listener_quorum").inc()
                    if throttle.allow("hold"):
                        log.warning("cannot renew the listener slot (%s); retrying", exc)
                    if listening is not None:
                        # No answer is not "taken": go on listening (see the module's doc),
                        # counted from now, however long the question went unanswered.
                        slot.valid_until = trio.current_time() + lease_ms / 1000
                    index = slot.index if slot.held() else -1
                else:
                    readiness.redis_ok = True
                    if index >= 0:
                        # Redis renewed it somewhere between asking and answering. An answer
                        # slower than the lease (a failover) still says the slot is ours: at
                        # least until the next renewal goes out.
                        answered = trio.current_time()
                        slot.valid_until = max(asked, answered - lease_ms / 2000) + lease_ms / 1000
                finally:
                    slot.unanswered = False
                if index >= 0 and listening is None:
                    slot.index = index
                    listening = await nursery.start(_listen_in_scope, listen, slot)
                    log.info("listening for expiries in listener slot %d of %d", index, slots)
                elif index >= 0 and index != slot.index:
                    # Its lease ran out in Redis meanwhile (an outage) and it took a free slot:
                    # another one, maybe the lead's (slot 0), which decides who pulls a trickle.
                    slot.index = index
                    log.info("listening on, now in listener slot %d of %d", index, slots)
                elif index < 0 and listening is not None:
                    listening.scope.cancel()
                    listening = None
                    slot.index = -1
                    log.info("lost the listener slot; working the queue only")
                readiness.listener = listening is not None
                if not started:
                    started = True
                    task_status.started()
                await trio.sleep(lease_ms / 3000)
    finally:
        readiness.listener = False
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await redis.script(scripts.RELEASE_SLOT, keys, [consumer_id])
            except Exception as exc:  # its lease runs out by itself
                log.debug("cannot give the listener slot back: %s", exc)


async def _listen_in_scope(
    listen: Listen, slot: Slot, *, task_status: trio.TaskStatus[_Listening]
) -> None:
    with trio.CancelScope() as scope:
        listening = _Listening(scope)
        task_status.started(listening)
        try:
            await listen(slot)
        finally:
            listening.ended = True
