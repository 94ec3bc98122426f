"""Task: claim registered keys at their deadlines, instead of when Redis announces them.

Redis announces an expiry when it deletes the key: when the key is accessed, or when its
active expire cycle (``hz`` times a second) happens to sample it, which in a Redis full of
other keys can be hundreds of milliseconds late. A registered key's deadline is known
(``expiry:due``), so the lead listener (slot 0) keeps the deadlines of the next
``lookahead_ms`` in a heap, sleeps until the earliest, and at it sends ``("due", key)`` into
the channel its listener feeds. The publisher claims those with ``HEAR`` exactly as their
``expired`` event would (the event, heard later, finds them claimed) and publishes them at
once. Claims stay atomic in Redis: this task only makes them come sooner.

It learns deadlines two ways; no tick decides when a key fires:
- reading the registry (``UPCOMING``) from ``RECENT_MS`` back to ``lookahead_ms`` ahead, every
  half lookahead: every deadline registered more than a lookahead ahead is known in time. Only
  keys that exist are armed: a registration whose key is not written yet (on a Redis Cluster
  a producer registers first and writes next, and may register again if its first reply was
  lost) is left to Redis's announcement and the sweepers, as a key already gone is (the
  ``EXISTS`` makes Redis announce a key that expired);
- from the publisher's claims: ``HEAR`` reports each deadline it registers within the
  lookahead (the ``expire`` event of a key armed or moved) and each ``due`` key not due yet.
  A deadline heard sooner than the one it sleeps for wakes it at once.

Every time it is given is "ms until due, by Redis's clock, as of that reply": it never compares
its wall clock with Redis's. A full page of the registry is a burst: then the keys are left to
Redis's own announcements (its expire cycle is busy with them anyway) and the sweepers, and the
registry is read again after ``BUSY_S``. Keys overdue by more than ``RECENT_MS`` are the
sweepers' too.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable

import trio

from consumer.claim_store import KeyEvent, read_upcoming
from shared import names, telemetry
from shared.bridge import RedisGateway
from shared.logs import Throttle
from shared.patterns import KeyPatterns

log = logging.getLogger(__name__)

#: Registry entries read per slot group and read, at most; a full page is a burst.
PAGE = 500
#: How far back a read looks: deadlines passed this recently are still claimed here.
RECENT_MS = 1000
BUSY_S = 0.1
#: Two reports of one key this close (s) are of one deadline (each is rounded to a ms).
SAME_DEADLINE_S = 0.0015
#: A key read again this soon (s) after it was sent is still being claimed; later, it is sent
#: again (its claim failed), until it is ``RECENT_MS`` overdue.
REFIRE_S = 0.5


class Timers:
    """The deadlines to fire, soonest first, and the wake-up of the task that fires them.

    Only the lead fires timers (``active``); elsewhere what the publisher reports is dropped.
    """

    def __init__(self) -> None:
        self.active = False
        #: (trio time the key falls due, key), soonest first; entries a later report moved
        #: are skipped when they come up.
        self._heap: list[tuple[float, str]] = []
        #: Key -> the trio time it falls due, as last reported.
        self._armed: dict[str, float] = {}
        #: Key -> the trio time it was sent due, for ``REFIRE_S``.
        self._sent: dict[str, float] = {}
        self._wake_at = math.inf
        self._woken = trio.Event()

    def arm(self, upcoming: Iterable[tuple[str, int]], *, read: bool = False) -> None:
        """Fire each (key, ms until due) when it falls due; wake the firing task if sooner
        than it planned. As many keys as a page waiting means a burst: further reports are
        dropped (Redis announces those keys itself).

        A registry ``read`` may have started before a key was sent and be answered after: a
        key it reports that was sent a moment ago is being claimed, and is not armed again.
        What a claim reports (a deadline registered or moved) is never older than a send.
        """
        if not self.active:
            return
        now = trio.current_time()
        for key, until_ms in upcoming:
            if len(self._armed) >= PAGE:
                break
            if read and now - self._sent.get(key, -math.inf) < REFIRE_S:
                continue  # sent a moment ago: its claim is on its way
            at = now + max(0, until_ms) / 1000
            known = self._armed.get(key)
            if known is not None and abs(known - at) < SAME_DEADLINE_S:
                continue  # read again: the same deadline
            self._armed[key] = at
            heapq.heappush(self._heap, (at, key))
        if self._heap and self._heap[0][0] < self._wake_at:
            self._woken.set()

    def take_due(self) -> list[str]:
        """The keys due now, taken out."""
        now = trio.current_time()
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, key = heapq.heappop(self._heap)
            if self._armed.get(key) == at:
                del self._armed[key]
                due.append(key)
        if len(self._sent) > PAGE:
            self._sent = {k: t for k, t in self._sent.items() if now - t < REFIRE_S}
        self._sent.update(dict.fromkeys(due, now))
        return due

    async def sleep(self, until: float) -> None:
        """Sleep until trio time ``until``, the next deadline, or an earlier one armed."""
        self._wake_at = min(until, self._heap[0][0]) if self._heap else until
        self._woken = trio.Event()
        with trio.move_on_at(self._wake_at):
            await self._woken.wait()
        self._wake_at = math.inf

    def clear(self) -> None:
        self._heap.clear()
        self._armed.clear()
        self._sent.clear()


async def run_timers(
    redis: RedisGateway,
    timers: Timers,
    send: trio.MemorySendChannel[list[KeyEvent]],
    patterns: KeyPatterns,
    lookahead_ms: int,
) -> None:
    """Send ``("due", key)`` for each registered key matching ``patterns`` as its deadline
    comes, until cancelled. Other fleets sharing the Redis (``FLEET``) fire their own keys."""
    timers.active = True
    try:
        async with send:
            next_read = trio.current_time()
            while True:
                if trio.current_time() >= next_read:
                    next_read = trio.current_time() + await _read(
                        redis, timers, patterns, lookahead_ms
                    )
                due = timers.take_due()
                if due:
                    await send.send([(names.DUE_EVENT, key) for key in due])
                await timers.sleep(next_read)
    finally:
        timers.active = False
        timers.clear()


_WARNINGS = Throttle()


async def _read(
    redis: RedisGateway, timers: Timers, patterns: KeyPatterns, lookahead_ms: int
) -> float:
    """Arm what the registry holds around now, for keys that exist; how long until the next
    read (s)."""
    try:
        pages = await read_upcoming(redis, RECENT_MS, lookahead_ms, PAGE)
        if any(len(page) >= PAGE for page in pages):
            return BUSY_S
        mine = [pair for page in pages for pair in page if patterns.matches(pair[0])]
        written = await redis.commands([("EXISTS", key) for key, _ in mine]) if mine else []
    except Exception as exc:  # Redis away: the listener and the sweepers say so
        telemetry.ERRORS.labels("timers").inc()
        if _WARNINGS.allow("read"):
            log.warning("cannot read the registered deadlines (%s); retrying", exc)
        return BUSY_S
    timers.arm((pair for pair, exists in zip(mine, written, strict=True) if int(exists)), read=True)
    return lookahead_ms / 2000
