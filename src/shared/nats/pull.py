"""Pulling from the durable consumer into trio, and settling what was delivered."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from shared import names
from shared.bridge.loop import crossing
from shared.lease import member_of
from shared.nats import _internals as internals
from shared.nats.topology import PRIORITY_GROUP, consumer_info, has_priority_group

log = logging.getLogger(__name__)


#: How many messages must wait before the feeds of non-primary processes get any (default).
OVERFLOW_PENDING = 64


@dataclass(frozen=True)
class JetStreamMessage:
    """One delivery from the work queue: a key and the lease of its claim."""

    key: str
    lease: str
    delivered: int
    handle: Any


class Feed:
    """A stream of deliveries from the durable consumer, for trio tasks (one or several).

    nats-py's ``fetch`` waits for a whole batch (or its timeout) once the first message
    arrives, which adds up to the timeout to every key's latency. Here one pull request for
    ``batch`` messages stays open on the server, and each fetch returns as soon as anything
    is in the inbox; a new request goes out when the last one is used up or has expired.

    Deliveries are handed to a trio memory channel as nats-py reads them, so a fetch that
    finds messages (or waits for them) does not cross into asyncio: at one key per ms nearly
    every fetch is of one message, and a crossing cost 250 to 320 µs of CPU (measured).

    JetStream hands each message to the waiting pull requests in turn, so with every process
    pulling, a trickle of keys arrives as batches of one, and each batch wakes a process (a
    wake-up alone costs 60-250 µs of CPU here). So only a primary process (the lead
    listener, awake for every expiry anyway) pulls at any rate; the others ask with
    ``min_pending`` and get messages only while a backlog waits (JetStream's overflow
    priority policy): the whole fleet works a burst.
    """

    REQUEST_EXPIRES_S = 2.0
    #: A process that is not primary still asks without ``min_pending`` once this often, so
    #: that a trickle never waits longer than that when no process is primary (the lead's
    #: slot empty after it died, or held by a consumer that does not know it yet).
    PLAIN_EVERY_S = 5.0

    def __init__(self, pull: PullFeed, primary: Callable[[], bool] = lambda: True) -> None:
        self._pull = pull
        self._primary = primary
        self._plain_at = trio.current_time() + self.PLAIN_EVERY_S
        self._asked_as_primary = True
        self._requested = 0
        self._request_ends = 0.0
        self._requesting = False
        self.closed = False

    async def fetch(self, batch: int, wait_s: float) -> list[JetStreamMessage]:
        """Messages as soon as any arrive, up to ``batch``; [] when none came in ``wait_s``."""
        inbox = self._pull.inbox
        out: list[JetStreamMessage] = []
        give_up = trio.current_time() + wait_s
        while not out and not self.closed:
            now = trio.current_time()
            primary = self._primary()
            if (
                self._requested <= 0
                or now >= self._request_ends
                or primary != self._asked_as_primary  # became a listener, or stopped being one
            ) and not self._requesting:
                self._requesting = True  # one request at a time, whoever reads the feed
                plain = primary or now >= self._plain_at
                if plain and not primary:
                    self._plain_at = now + self.PLAIN_EVERY_S
                try:
                    await crossing(self._pull.request)(batch, self.REQUEST_EXPIRES_S, plain)
                finally:
                    self._requesting = False
                self._asked_as_primary = primary
                self._requested = batch
                # Ask again a little before the server lets the request expire.
                self._request_ends = now + self.REQUEST_EXPIRES_S * 0.9
            while len(out) < batch:
                try:
                    self._take(inbox.receive_nowait(), out)
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            if out or now >= give_up:
                break
            # While another reader is asking, only its request's answers can come.
            wake = give_up if self._requesting else min(give_up, self._request_ends)
            with trio.move_on_after(wake - now):
                try:
                    self._take(await inbox.receive(), out)
                except trio.EndOfChannel:  # closed by another reader
                    break
        return out

    def _take(self, message: Any, out: list[JetStreamMessage]) -> None:
        headers = message.headers or {}
        status = headers.get("Status")
        if status is None:
            self._requested -= 1
            out.append(_delivery(message))
            return
        description = headers.get("Description", "")
        if status == "100":
            return  # heartbeat
        if status in ("404", "408") or (status == "409" and "Deleted" not in description):
            self._requested = 0  # that request is over: nothing left, expired, or superseded
            return
        raise ConnectionError(f"JetStream pull failed: {status} {description}".strip())

    async def close(self) -> None:
        """Give back what is still in the inbox and stop receiving."""
        if not self.closed:
            self.closed = True
            await crossing(self._pull.close)()


class PullFeed:
    """The asyncio side of a ``Feed``: a subscription to a fresh inbox whose messages go
    straight into a trio memory channel, and the pull requests answered there."""

    def __init__(self, nc: Any, queue: names.Queue, overflow_pending: int) -> None:
        self._nc = nc
        self._queue = queue
        self._overflow_pending = overflow_pending
        self._subscription: Any = None
        self._send, self.inbox = trio.open_memory_channel[Any](math.inf)
        #: Whether the durable consumer has the priority group (else requests name none).
        self.grouped = False

    @classmethod
    async def open(
        cls, nc: Any, js: Any, queue: names.Queue, overflow_pending: int = OVERFLOW_PENDING
    ) -> PullFeed:
        """Bind to the durable consumer (which must exist) and subscribe to a fresh inbox."""
        info = await consumer_info(js, queue)
        feed = cls(nc, queue, overflow_pending)
        feed.grouped = has_priority_group(info)
        subscription = await nc.subscribe(nc.new_inbox(), pending_bytes_limit=512 * 1024 * 1024)
        # nats-py puts each message it reads into the subscription's queue; this one hands it
        # on to trio at once (no asyncio task woken per message). Nothing arrives before the
        # first pull request.
        internals.hand_off(subscription, _handoff_to(feed._send))
        feed._subscription = subscription
        return feed

    async def request(self, batch: int, expires_s: float, primary: bool = True) -> None:
        """Ask the durable consumer for up to ``batch`` messages within ``expires_s``; only
        while a backlog waits unless ``primary``."""
        request: dict[str, Any] = {"batch": batch, "expires": int(expires_s * 1e9)}
        if self.grouped:
            request["group"] = PRIORITY_GROUP
            if not primary and self._overflow_pending:
                request["min_pending"] = self._overflow_pending
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._queue.stream}.{self._queue.durable}",
            json.dumps(request).encode(),
            reply=self._subscription.subject,
        )

    async def close(self) -> None:
        """Give back undelivered messages in the inbox at once, then unsubscribe."""
        try:
            await self._subscription.unsubscribe()
            left = []
            self._send.close()  # readers waiting on the inbox return
            while True:
                try:
                    left.append(self.inbox.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            for message in left:
                if not (message.headers or {}).get("Status"):
                    await message.nak()
        except Exception as exc:  # the connection may be gone; JetStream redelivers anyway
            log.debug("closing the pull feed: %s", exc)


def _handoff_to(send: trio.MemorySendChannel[Any]) -> Callable[[Any], None]:
    def deliver(message: Any) -> None:
        # Once the feed is closed, JetStream delivers the message again after its ack wait.
        with contextlib.suppress(trio.ClosedResourceError):
            send.send_nowait(message)

    return deliver


def _delivery(msg: Any) -> JetStreamMessage:
    headers = msg.headers or {}
    key = msg.data.decode("utf-8", "replace")
    claim = headers.get(names.CLAIM_HEADER, "")
    return JetStreamMessage(
        key=key,
        lease=member_of(claim, key) if claim else "",
        delivered=msg.metadata.num_delivered,
        handle=msg,
    )


async def settle(handles: Sequence[Any], how: str, delay: float | None) -> None:
    for msg in handles:
        if how == "nak":
            await msg.nak(delay=delay)
        elif how == "in_progress":
            await msg.in_progress()
        else:
            await msg.term()


def write_acks(handles: Sequence[Any]) -> None:
    nc = internals.client_of(handles[0])
    try:
        internals.write(nc, b"".join(b"PUB %s 0\r\n\r\n" % m.reply.encode() for m in handles))
    except ConnectionError:
        raise ConnectionError(
            "NATS is not connected: the messages will be delivered again"
        ) from None
    for message in handles:
        internals.mark_acked(message)
