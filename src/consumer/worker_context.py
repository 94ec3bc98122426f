"""What every pull worker of a process shares: the gateways, the handler and its limits, and
one pull feed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from consumer.handler import Handler
from shared.bridge import RedisGateway
from shared.nats import JetStream, JetStreamMessage
from shared.nats.pull import OVERFLOW_PENDING, Feed

log = logging.getLogger(__name__)


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


async def _drop(feed: Feed | None) -> None:
    if feed is not None:
        try:
            await feed.close()
        except Exception as exc:
            log.debug("closing a pull feed: %s", exc)
