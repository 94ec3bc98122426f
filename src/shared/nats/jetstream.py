"""nats-py's JetStream client behind trio-callable methods, one crossing per batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from shared import names
from shared.bridge.loop import crossing
from shared.config import StreamSettings
from shared.libraries import require
from shared.nats import _internals as internals
from shared.nats.connect import ConnectionEvents
from shared.nats.connect import close as close_connection
from shared.nats.connect import connect as open_connection
from shared.nats.publish import PUBLISH_TIMEOUT_S, PubAcks, hpub
from shared.nats.pull import OVERFLOW_PENDING, Feed, JetStreamMessage, PullFeed, settle, write_acks
from shared.nats.topology import DEFAULT_STREAM, consumer_state, ensure_topology


class JetStream:
    """The work queue: stream, durable pull consumer, publishing and fetching."""

    def __init__(
        self,
        nc: Any,
        events: ConnectionEvents,
        queue: names.Queue,
        stream: StreamSettings = DEFAULT_STREAM,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream(publish_async_max_pending=20000)
        self._feeds: set[Feed] = set()
        self._pub_acks: PubAcks | None = None
        self._pub_acks_ready = trio.Lock()
        self.events = events
        self.queue = queue
        self.stream = stream

    @classmethod
    async def connect(
        cls,
        url: str,
        creds: str | None,
        name: str,
        queue: names.Queue | None = None,
        *,
        stream: StreamSettings | None = None,
        ca_file: str | None = None,
    ) -> JetStream:
        """Connect to NATS (raises when unreachable; reconnects by itself once connected).

        ``url`` is one server or several separated by commas (any of them will do; nats-py
        learns the rest of a cluster from the one it reaches). ``queue`` is the fleet's work
        queue (the design's names by default); ``stream`` how its stream is kept, when this
        process creates it; ``ca_file`` the CA to trust for ``tls://`` servers.
        ``LibraryMismatch`` when the installed nats-py is not the one this code relies on.
        """
        require(internals.PROBLEM)
        events = ConnectionEvents()
        nc = await crossing(open_connection)(url, creds, name, events, ca_file)
        return cls(nc, events, queue or names.queue_of(), stream or DEFAULT_STREAM)

    @property
    def is_connected(self) -> bool:
        """Whether the NATS connection is up right now."""
        return bool(self._nc.is_connected)

    async def ensure_topology(self) -> list[str]:
        """Create the stream and the durable consumer where missing.

        Returns a description of each setting in which an existing stream or consumer differs
        from the one this system needs (empty when all match); those are reported, not replaced.
        """
        return await crossing(ensure_topology)(self._js, self.queue, self.stream)

    async def publish_batch(self, items: Sequence[tuple[str, dict[str, str]]]) -> list[str | None]:
        """Publish each (key, headers); per item, None when JetStream stored it (or had it),
        else why not: its refusal (a full store: "insufficient resources"), no stream, or no
        answer.

        One write of the whole batch on the connection, from trio, each message with its own
        reply subject; JetStream's answers are matched to them as nats-py reads them (see
        ``PubAcks``). Items not answered within ``PUBLISH_TIMEOUT_S`` count as not stored.
        """
        if not items:
            return []
        async with self._pub_acks_ready:
            if self._pub_acks is None:
                self._pub_acks = await crossing(PubAcks.open)(self._nc)
        acks = self._pub_acks
        batch = acks.expect(len(items))
        try:
            subject = self.queue.subject
            internals.write(
                self._nc,
                b"".join(
                    hpub(subject, f"{acks.prefix}{batch.id}.{index}", headers, key.encode())
                    for index, (key, headers) in enumerate(items)
                ),
            )
            with trio.move_on_after(PUBLISH_TIMEOUT_S):
                await batch.answered.wait()
            return list(batch.refused)
        finally:
            acks.forget(batch)

    async def open_feed(
        self, primary: Callable[[], bool] = lambda: True, overflow_pending: int = OVERFLOW_PENDING
    ) -> Feed:
        """Bind to the durable consumer (which must exist) with a fresh inbox for deliveries.

        ``primary`` says, at each pull request, whether this process takes messages at any
        rate; the others get them only while ``overflow_pending`` wait (see ``Feed``; 0: at
        any rate too).
        """
        pull = await crossing(PullFeed.open)(self._nc, self._js, self.queue, overflow_pending)
        feed = Feed(pull, primary)
        self._feeds.add(feed)
        return feed

    async def ack(self, messages: Sequence[JetStreamMessage]) -> None:
        """Acknowledge ``messages`` with one write on the NATS connection, from trio.

        An ack is an empty publish to the message's reply subject. nats-py would build, queue
        and flush each on its own, in asyncio: a crossing and an asyncio task step per batch
        for a few bytes. The connection's transport takes the write as the flusher would
        (whole commands, in order, buffered by asyncio when the socket is full). Raises
        ``ConnectionError`` while NATS is not connected: JetStream delivers them again.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if messages:
            write_acks([m.handle for m in messages])

    async def nak(self, messages: Sequence[JetStreamMessage], delay: float) -> None:
        """Ask for redelivery of ``messages`` after ``delay`` seconds."""
        await crossing(settle)([m.handle for m in messages], "nak", delay)

    async def in_progress(self, messages: Sequence[JetStreamMessage]) -> None:
        """Tell JetStream ``messages`` are still being worked on (their ack wait starts again,
        and no delivery attempt is spent)."""
        await crossing(settle)([m.handle for m in messages], "in_progress", None)

    async def term(self, messages: Sequence[JetStreamMessage]) -> None:
        """Tell JetStream never to deliver ``messages`` again."""
        await crossing(settle)([m.handle for m in messages], "term", None)

    async def consumer_state(self) -> dict[str, int]:
        """``num_pending``, ``num_ack_pending`` and ``num_redelivered`` of the durable consumer."""
        return await crossing(consumer_state)(self._js, self.queue)

    async def aclose(self) -> None:
        """Close the connection (every message in hand has been settled by then)."""
        self.events.closing = True
        for feed in list(self._feeds):
            await feed.close()
        await crossing(close_connection)(self._nc)
