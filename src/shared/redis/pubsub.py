"""A trio-native Redis pub/sub subscriber, for the hot path of the expiry listener.

Every consumer hears every expiry in the system, so reading the pub/sub stream is the most
frequent thing a consumer does. Going through redis-py's asyncio pub/sub costs one bridge
crossing and one parser round trip per message; this reader takes whole socket reads, lets
hiredis (the parser redis-py itself uses) split them into messages, and hands back every message
that arrived in one read as one batch.

On a Redis Cluster each node publishes only the events of its own keys, so
``open_subscription`` subscribes on every master and follows failovers (``ClusterSubscription``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import trio
from redis.exceptions import RedisError

from shared.redis.address import RedisAddress
from shared.redis.cluster_nodes import parse_cluster_nodes
from shared.redis.resp import RespConnection

__all__ = ["Heard", "Node", "PubSubError", "RedisAddress", "Subscription", "open_subscription"]

log = logging.getLogger(__name__)

#: How long to wait for a cluster node to accept a connection and answer, before trying the next
#: one: a host that vanished (rather than refusing) would otherwise hold a refresh for minutes.
_NODE_TIMEOUT_S = 3.0
#: Batches the per-master readers may get ahead of ``receive_batch``: beyond it they stop reading,
#: and Redis buffers (then drops the subscriber at its pubsub output limit), as with one node.
_BATCHES_BUFFERED = 64

#: A cluster node: (host, port).
Node = tuple[str, int]
#: One keyspace event as Redis sent it: (event, key), such as ``(b"expired", b"session:7")``.
Heard = tuple[bytes, bytes]


class PubSubError(ConnectionError):
    """The subscription connection failed or Redis refused a command on it."""


def is_pattern(channel: str) -> bool:
    """Whether ``channel`` is a pattern (has glob characters after its ``__:`` prefix)."""
    name = channel.split("__:", 1)[-1]
    return any(c in name for c in "*?[")


class Subscriber(RespConnection):
    """One subscription connection; ``receive_batch`` returns the payloads of ``message``s."""

    @classmethod
    async def connect(cls, address: RedisAddress, channel: str) -> Subscriber:
        """Connect, authenticate and subscribe to ``channel``; returns once subscribed.

        A ``channel`` with glob characters (``*?[``) after its ``__:`` is a pattern
        (PSUBSCRIBE), as for the keyspace channels ``__keyspace@0__:<key pattern>``;
        several channels are separated by ``,,``.
        """
        try:
            subscriber = await cls.open(address)
        except RedisError as exc:
            raise PubSubError(str(exc)) from None
        try:
            for one in channel.split(",,"):
                command = "PSUBSCRIBE" if is_pattern(one) else "SUBSCRIBE"
                reply = (await subscriber.run([[command, one]]))[0]
                if isinstance(reply, Exception):
                    raise PubSubError(f"{command} {one}: {reply}")
                if not (isinstance(reply, list) and reply[:1] == [command.lower().encode()]):
                    raise PubSubError(f"{command} {one} answered {reply!r}")
        except BaseException:
            await subscriber.aclose()
            raise
        return subscriber

    async def receive_batch(self) -> list[Heard]:
        """Wait for at least one read from the socket; return the key events it held, in order.

        A keyevent message carries the key as its payload and the event in its channel,
        ``__keyevent@<db>__:<event>``; a keyspace message (from a pattern) carries the key in
        its channel, ``__keyspace@<db>__:<key>``, and the event as its payload.
        """
        heard: list[Heard] = []
        while not heard:
            try:
                await self.receive()
            except RedisError as exc:
                raise PubSubError(f"{exc} (subscription)") from None
            for reply in self.replies():
                if not isinstance(reply, list):
                    continue
                if len(reply) == 4 and reply[0] == b"pmessage":
                    heard.append((reply[3], reply[2].split(b"__:", 1)[1]))
                elif len(reply) == 3 and reply[0] == b"message":
                    kind, _, name = reply[1].partition(b"__:")
                    if kind.startswith(b"__keyspace@"):
                        heard.append((reply[2], name))
                    else:
                        heard.append((name, reply[2]))
        return heard


class Subscription(Protocol):
    """What the expiry listener reads: batches of key events, from one node or a cluster."""

    async def receive_batch(self) -> list[Heard]:
        """Wait until at least one key event came; return the events heard, in order."""
        ...


@asynccontextmanager
async def open_subscription(
    address: RedisAddress, channel: str, refresh_s: float = 1.0
) -> AsyncIterator[Subscription]:
    """Subscribe to ``channel`` on Redis: on its one server, or on every master of a cluster.

    Returns once subscribed; connection errors raise ``OSError`` or ``PubSubError``. On a
    cluster, the masters are read again every ``refresh_s`` seconds (see ClusterSubscription).
    """
    if address.cluster:
        async with ClusterSubscription.open(address, channel, refresh_s) as subscription:
            yield subscription
        return
    subscriber = await Subscriber.connect(address, channel)
    try:
        yield subscriber
    finally:
        with trio.CancelScope(shield=True):
            await subscriber.aclose()


async def cluster_masters(
    address: RedisAddress, known: Sequence[Node] = (), replicas: bool = False
) -> list[Node]:
    """The masters of the cluster that serve slots (with ``replicas``, then their replicas),
    as the first node to answer tells.

    The seed ``address`` is asked first, then the ``known`` nodes (so a dead seed does not
    blind a running subscription). Raises ``PubSubError`` when no node answers.
    """
    failures = []
    for node in dict.fromkeys([(address.host, address.port), *known]):
        try:
            with trio.fail_after(_NODE_TIMEOUT_S):
                connection = await RespConnection.open(address.at(node))
                try:
                    reply = await connection.command("CLUSTER", "NODES")
                finally:
                    await connection.aclose()
        except (OSError, RedisError, trio.TooSlowError) as exc:
            failures.append(f"{node[0]}:{node[1]} ({exc or 'timed out'})")
            continue
        text = reply.decode() if isinstance(reply, bytes) else ""
        masters = serving_masters(text, node, replicas)
        if masters:
            return masters
        failures.append(f"{node[0]}:{node[1]} (knows no master serving slots)")
    raise PubSubError(
        "no node of the Redis cluster told its masters: "
        + ", ".join(failures)
        + "; check REDIS_URL (redis+cluster://host:port of a node) and the cluster's state"
    )


def serving_masters(cluster_nodes: str, asked: Node, replicas: bool = False) -> list[Node]:
    """The (host, port) of the masters serving slots in a ``CLUSTER NODES`` reply, and with
    ``replicas`` the live replicas after them.

    A master flagged ``fail`` is left out: a majority of masters
    agreed it is down, and its replica takes over and shows up as a master of its own. One
    flagged ``fail?`` is kept: that is one node's suspicion, maybe of a node that only it
    cannot reach; subscribing to a dead node costs a failed connection, while leaving out a
    live one would lose its events. The announced hostname, if any, is preferred to the IP
    (it is what a TLS certificate names); ``asked`` stands in for a node that does not know
    its own IP yet.
    """
    masters: list[Node] = []
    followers: list[Node] = []
    for node in parse_cluster_nodes(cluster_nodes):
        if node.flags & {"fail", "noaddr", "handshake"}:
            continue
        is_master = node.master and bool(node.slots)
        if not is_master and not (replicas and node.replica):
            continue
        host = node.host or (asked[0] if node.myself else "")
        if host:
            (masters if is_master else followers).append((host, node.port))
    return masters + followers if masters else []


@dataclass
class _Follower:
    """The subscription on one master: its task's cancel scope and how far it got."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: Set once the attempt to subscribe ended, subscribed or not.
    tried: trio.Event = field(default_factory=trio.Event)
    subscribed: bool = False


class ClusterSubscription:
    """The same channel subscribed on every node of a Redis Cluster, following its topology.

    Keyspace events are node-local: a key's expiry is published only by the master that holds
    it, so one reader per master feeds a memory channel. Replicas are subscribed too: they
    publish no expiries (they apply their master's deletions), but the moment one is promoted
    it does, and the keys that ran out while its master was dead all expire at that moment,
    before any re-reading of the topology could subscribe. Every ``refresh_s`` the nodes are
    read again: a node added is subscribed, one gone is let go. A reader whose connection fails
    warns once and ends; the next refresh brings it back while its node is listed.
    """

    def __init__(self, address: RedisAddress, channel: str, nursery: trio.Nursery) -> None:
        self._address = address
        self._channel = channel
        self._nursery = nursery
        self._followed: dict[Node, _Follower] = {}
        self._failing: set[Node] = set()
        self._known: list[Node] = []
        self._failure: PubSubError | None = None
        self._send, self._receive = trio.open_memory_channel[list[Heard]](_BATCHES_BUFFERED)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, address: RedisAddress, channel: str, refresh_s: float
    ) -> AsyncIterator[ClusterSubscription]:
        """Subscribe on every master; raises ``PubSubError`` if none answers or subscribes."""
        failure: Exception | None = None
        async with trio.open_nursery() as nursery:
            try:
                subscription = cls(address, channel, nursery)
                await subscription._subscribe_all(await cluster_masters(address, replicas=True))
                nursery.start_soon(subscription._follow_topology, refresh_s)
                yield subscription
            except Exception as exc:
                failure = exc  # raised below, outside the nursery, as itself
            nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    @property
    def nodes(self) -> list[Node]:
        """The nodes (masters, then replicas waiting to be promoted) subscribed on right now."""
        return sorted(node for node, follower in self._followed.items() if follower.subscribed)

    async def receive_batch(self) -> list[Heard]:
        """Wait until some master published a key event; return every event heard by then.

        Raises ``PubSubError`` once no master is followed and none of the cluster answers.
        """
        try:
            keys = await self._receive.receive()
        except trio.EndOfChannel:
            assert self._failure is not None
            raise self._failure from None
        while True:
            try:
                keys += self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return keys

    async def _subscribe_all(self, masters: list[Node]) -> None:
        """Follow ``masters``, waiting until each was tried; fail if none could be subscribed."""
        self._follow_only(masters)
        for follower in list(self._followed.values()):
            await follower.tried.wait()
        if not self.nodes:
            listed = ", ".join(f"{host}:{port}" for host, port in masters)
            raise PubSubError(f"could not subscribe on any master of the Redis cluster ({listed})")

    async def _follow_topology(self, refresh_s: float) -> None:
        """Re-read the masters every ``refresh_s``; follow exactly those.

        When the cluster cannot be asked and no master is followed any more, this subscription
        hears nothing: it ends the channel, so ``receive_batch`` raises and the listener
        subscribes afresh with back-off.
        """
        async with self._send:
            while True:
                await trio.sleep(refresh_s)
                try:
                    masters = await cluster_masters(self._address, self._known, replicas=True)
                except PubSubError as exc:
                    if not self._followed:
                        self._failure = exc
                        return
                    log.debug("cannot refresh the Redis cluster's masters (%s)", exc)
                    continue
                self._follow_only(masters)

    def _follow_only(self, masters: list[Node]) -> None:
        """Start a reader for each new master; stop those of nodes no longer masters."""
        self._known = masters
        self._failing &= set(masters)
        for node in set(self._followed) - set(masters):
            log.info("%s:%d is no longer a live master; unsubscribing from it", *node)
            self._followed.pop(node).scope.cancel()
        for node in masters:
            if node not in self._followed:
                follower = self._followed[node] = _Follower()
                self._nursery.start_soon(self._follow, node, follower, self._send.clone())

    async def _follow(
        self, node: Node, follower: _Follower, send: trio.MemorySendChannel[list[Heard]]
    ) -> None:
        """Forward ``node``'s expired keys until its connection fails or it is let go."""
        try:
            async with send:
                with follower.scope:
                    subscriber = await self._subscribe(node, follower)
                    if subscriber is not None:
                        await self._forward(node, subscriber, send)
        finally:
            if self._followed.get(node) is follower:
                del self._followed[node]

    async def _subscribe(self, node: Node, follower: _Follower) -> Subscriber | None:
        """Subscribe on ``node``; ``None`` (after a warning) if it cannot be reached."""
        try:
            with trio.fail_after(_NODE_TIMEOUT_S):
                subscriber = await Subscriber.connect(self._address.at(node), self._channel)
        except (OSError, PubSubError, trio.TooSlowError) as exc:
            self._warn(node, f"cannot subscribe on Redis master {node[0]}:{node[1]} ({exc})")
            return None
        finally:
            follower.tried.set()
        follower.subscribed = True
        self._failing.discard(node)
        return subscriber

    async def _forward(
        self, node: Node, subscriber: Subscriber, send: trio.MemorySendChannel[list[Heard]]
    ) -> None:
        try:
            while True:
                await send.send(await subscriber.receive_batch())
        except (OSError, PubSubError) as exc:
            self._warn(node, f"lost the subscription on Redis master {node[0]}:{node[1]} ({exc})")
        finally:
            with trio.CancelScope(shield=True):
                await subscriber.aclose()

    def _warn(self, node: Node, message: str) -> None:
        """Warn about ``node`` once until it is subscribed again (a dead master is retried on
        every refresh until the cluster agrees it failed)."""
        if node in self._failing:
            log.debug("%s", message)
            return
        self._failing.add(node)
        log.warning("%s; retrying while it is listed as a master", message)
