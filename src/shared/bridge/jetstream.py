"""nats-py's JetStream client behind trio-callable methods, one crossing per batch."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import trio
from nats.js import api
from nats.js.errors import NotFoundError, ServerError

from shared import names
from shared.bridge.loop import crossing
from shared.config import StreamSettings, redact, split_servers
from shared.logs import Throttle
from shared.nats import _internals as internals

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
#: The priority group every pull request names: with the overflow policy, a request that
#: asks for ``min_pending`` gets messages only while that many wait (nats-server 2.11+).
PRIORITY_GROUP = "workers"
#: How many messages must wait before the feeds of non-primary processes get any (default).
OVERFLOW_PENDING = 64


DEFAULT_STREAM = StreamSettings()
_STORAGE_TYPES = {"memory": api.StorageType.MEMORY, "file": api.StorageType.FILE}


def stream_config(
    queue: names.Queue, settings: StreamSettings = DEFAULT_STREAM
) -> api.StreamConfig:
    """The settings of ``queue``'s stream: a WorkQueue kept for a day at most, with the
    replicas and storage of ``settings`` (one replica in memory by default)."""
    return api.StreamConfig(
        name=queue.stream,
        subjects=[queue.subject],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=_STORAGE_TYPES[settings.storage],
        num_replicas=settings.replicas,
        max_age=names.STREAM_MAX_AGE_S,
    )


def consumer_config(queue: names.Queue) -> api.ConsumerConfig:
    """The settings of the durable pull consumer every consumer process shares."""
    return api.ConsumerConfig(
        durable_name=queue.durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        max_deliver=names.MAX_DELIVER,
        ack_wait=names.ACK_WAIT_S,
        filter_subject=queue.subject,
        max_ack_pending=20000,
    )


STREAM_CONFIG = stream_config(names.queue_of())
CONSUMER_CONFIG = consumer_config(names.queue_of())


@dataclass(frozen=True)
class JetStreamMessage:
    """One delivery from the work queue: a key and the lease of its claim."""

    key: str
    lease: str
    delivered: int
    handle: Any


@dataclass
class ConnectionEvents:
    """Counts of connection events reported by nats-py (read by trio tasks)."""

    reconnects: int = 0
    closing: bool = False


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
        internals.require()
        events = ConnectionEvents()
        nc = await crossing(_connect)(url, creds, name, events, ca_file)
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
        return await crossing(_ensure_topology)(self._js, self.queue, self.stream)

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
                    _hpub(subject, f"{acks.prefix}{batch.id}.{index}", headers, key.encode())
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
            _write_acks([m.handle for m in messages])

    async def nak(self, messages: Sequence[JetStreamMessage], delay: float) -> None:
        """Ask for redelivery of ``messages`` after ``delay`` seconds."""
        await crossing(_settle)([m.handle for m in messages], "nak", delay)

    async def in_progress(self, messages: Sequence[JetStreamMessage]) -> None:
        """Tell JetStream ``messages`` are still being worked on (their ack wait starts again,
        and no delivery attempt is spent)."""
        await crossing(_settle)([m.handle for m in messages], "in_progress", None)

    async def term(self, messages: Sequence[JetStreamMessage]) -> None:
        """Tell JetStream never to deliver ``messages`` again."""
        await crossing(_settle)([m.handle for m in messages], "term", None)

    async def consumer_state(self) -> dict[str, int]:
        """``num_pending``, ``num_ack_pending`` and ``num_redelivered`` of the durable consumer."""
        return await crossing(_consumer_state)(self._js, self.queue)

    async def aclose(self) -> None:
        """Close the connection (every message in hand has been settled by then)."""
        self.events.closing = True
        for feed in list(self._feeds):
            await feed.close()
        await crossing(_close)(self._nc)


async def _connect(
    url: str, creds: str | None, name: str, events: ConnectionEvents, ca_file: str | None
) -> Any:
    async def disconnected() -> None:
        if not events.closing:
            log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        events.reconnects += 1
        log.info("NATS reconnected")

    throttle = Throttle(10)

    async def error(exc: Exception) -> None:
        if throttle.allow(type(exc).__name__):
            log.warning("NATS at %s: %s; retrying", redact(url), _explain(exc, creds, ca_file))

    options: dict[str, Any] = {
        "servers": split_servers(url),
        "name": name,
        "connect_timeout": 2,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
    }
    if creds:
        options["user_credentials"] = creds
    if ca_file:
        options["tls"] = ssl.create_default_context(cafile=ca_file)
    try:
        return await nats.connect(**options)
    except Exception as exc:
        raise ConnectionError(
            f"cannot connect to NATS at {redact(url)}: {_explain(exc, creds, ca_file)}"
        ) from None


def _explain(exc: Exception, creds: str | None, ca_file: str | None) -> str:
    """What went wrong connecting, and what to check."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        trusted = f"NATS_CA_FILE={ca_file}" if ca_file else "the system's CAs (no NATS_CA_FILE)"
        return (
            f"the server's TLS certificate is not trusted ({exc.args[-1] if exc.args else text}):"
            f" set NATS_CA_FILE to the CA that signed it (trusted now: {trusted})"
        )
    if "authorization" in text.lower() or "authentication" in text.lower():
        if creds:
            return (
                f"the server refused the credentials in NATS_CREDS={creds} ({text.strip()}): "
                "check that the file's user belongs to an account this server trusts"
            )
        return (
            f"the server refused the connection ({text.strip()}): check the user and password "
            "in NATS_URL, or set NATS_CREDS to the user's .creds file"
        )
    return text


class _QuietTlsClose(logging.Filter):
    """Drops asyncio's note that nats-py's protocol asks to keep a TLS connection half-open
    when the server closes it: harmless, and repeated on every TLS disconnect."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsClose())


def _differences(wanted: Any, actual: Any, fields: Sequence[str]) -> list[str]:
    diffs = []
    for field in fields:
        want, have = getattr(wanted, field), getattr(actual, field)
        if want is not None and want != have:
            diffs.append(f"{field}: wanted {want!r}, found {have!r}")
    return diffs


async def _ensure_topology(js: Any, queue: names.Queue, settings: StreamSettings) -> list[str]:
    wanted_stream, wanted_consumer = stream_config(queue, settings), consumer_config(queue)
    try:
        info = await js.stream_info(queue.stream)
        diffs = _differences(
            wanted_stream,
            info.config,
            ("subjects", "retention", "storage", "num_replicas", "max_age"),
        )
        diffs = [f"stream {queue.stream} {d}" for d in diffs]
    except NotFoundError:
        try:
            await js.add_stream(wanted_stream)
        except ServerError as exc:
            raise _stream_refused(exc, settings) from None
        diffs = []
    try:
        raw = await _consumer_info(js, queue)
        grouped = _grouped(raw)  # before from_response, which turns the config into an object
        consumer = api.ConsumerInfo.from_response(raw)
        found = _differences(
            wanted_consumer, consumer.config, ("ack_policy", "max_deliver", "ack_wait")
        )
        if not grouped:
            found.append(
                f"priority_groups: wanted [{PRIORITY_GROUP!r}] (overflow), found none: every "
                "consumer then pulls at every rate, in smaller batches"
            )
        diffs += [f"consumer {queue.durable} {d}" for d in found]
    except NotFoundError:
        config = {
            **wanted_consumer.as_dict(),
            "priority_groups": [PRIORITY_GROUP],
            "priority_policy": "overflow",
        }
        await internals.api_request(
            js,
            f"CONSUMER.CREATE.{queue.stream}.{queue.durable}",
            json.dumps({"stream_name": queue.stream, "config": config}).encode(),
        )
    return diffs


async def _consumer_info(js: Any, queue: names.Queue) -> dict[str, Any]:
    """The durable consumer's info as JetStream sends it (nats-py drops fields it does not
    know, such as the priority groups)."""
    return await internals.api_request(js, f"CONSUMER.INFO.{queue.stream}.{queue.durable}", b"")


def _grouped(info: dict[str, Any]) -> bool:
    config = info.get("config") or {}
    return PRIORITY_GROUP in (config.get("priority_groups") or []) and (
        config.get("priority_policy") == "overflow"
    )


def _stream_refused(exc: ServerError, settings: StreamSettings) -> Exception:
    """JetStream's refusal to create the stream, with what to change when the settings are why."""
    description = getattr(exc, "description", None) or str(exc)
    if settings.replicas > 1 and (
        "non-clustered" in description or "insufficient resources" in description
    ):
        return RuntimeError(
            f"JetStream cannot keep STREAM_REPLICAS={settings.replicas} copies ({description}): "
            "point NATS_URL at a cluster of at least that many servers, or lower STREAM_REPLICAS"
        )
    return RuntimeError(f"JetStream refused to create the stream: {description}")


def _hpub(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    """The protocol line of a publish with headers (as nats-py builds it)."""
    header = b"NATS/1.0\r\n" + b"".join(
        b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers.items()
    )
    header += b"\r\n"
    size = len(header)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        size,
        size + len(payload),
        header,
        payload,
    )


@dataclass
class _Batch:
    id: int
    #: Per message: None once JetStream stored it, else why it is not stored (yet).
    refused: list[str | None]
    waiting: int
    answered: trio.Event


class PubAcks:
    """JetStream's answers to publishes, on one wildcard inbox, matched to their batches.

    Runs as nats-py reads each answer (inside the trio run): no asyncio task per answer.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._batches: dict[int, _Batch] = {}
        self._next_id = 0

    @classmethod
    async def open(cls, nc: Any) -> PubAcks:
        """Subscribe to a fresh wildcard inbox for the answers."""
        inbox = nc.new_inbox()
        acks = cls(f"{inbox}.")
        subscription = await nc.subscribe(f"{inbox}.>", pending_bytes_limit=512 * 1024 * 1024)
        internals.hand_off(subscription, acks._answer)
        return acks

    def expect(self, count: int) -> _Batch:
        """A batch of ``count`` publishes about to be written."""
        self._next_id += 1
        unanswered = f"no answer from JetStream within {PUBLISH_TIMEOUT_S:.0f} s"
        batch = _Batch(self._next_id, [unanswered] * count, count, trio.Event())
        self._batches[batch.id] = batch
        return batch

    def forget(self, batch: _Batch) -> None:
        """Answers still to come for ``batch`` are ignored."""
        self._batches.pop(batch.id, None)

    def _answer(self, message: Any) -> None:
        batch_id, _, index = message.subject[len(self.prefix) :].partition(".")
        try:
            batch = self._batches.get(int(batch_id))
            at = int(index)
        except ValueError:
            return
        if batch is None or not 0 <= at < len(batch.refused) or batch.refused[at] is None:
            return
        batch.refused[at] = _refusal(message)
        batch.waiting -= 1
        if batch.waiting == 0:
            batch.answered.set()


def _refusal(message: Any) -> str | None:
    """None when JetStream's answer says it stored the message (or had it: a duplicate), else
    what it said."""
    status = (message.headers or {}).get("Status")
    if status:
        return f"no stream takes the subject (status {status})"
    try:
        answer = json.loads(message.data)
    except ValueError:
        return f"an answer that is not JSON: {message.data[:80]!r}"
    if not isinstance(answer, dict):
        return f"an unexpected answer: {answer!r:.80}"
    error = answer.get("error")
    if error is not None:
        if isinstance(error, dict):
            return f"{error.get('description', error)} (JetStream error {error.get('err_code')})"
        return str(error)
    return None if "seq" in answer else f"an answer without a sequence: {answer!r:.80}"


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
        info = await _consumer_info(js, queue)
        feed = cls(nc, queue, overflow_pending)
        feed.grouped = _grouped(info)
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
        lease=f"{claim}|{key}" if claim else "",
        delivered=msg.metadata.num_delivered,
        handle=msg,
    )


async def _settle(handles: Sequence[Any], how: str, delay: float | None) -> None:
    for msg in handles:
        if how == "nak":
            await msg.nak(delay=delay)
        elif how == "in_progress":
            await msg.in_progress()
        else:
            await msg.term()


def _write_acks(handles: Sequence[Any]) -> None:
    nc = internals.client_of(handles[0])
    try:
        internals.write(nc, b"".join(b"PUB %s 0\r\n\r\n" % m.reply.encode() for m in handles))
    except ConnectionError:
        raise ConnectionError(
            "NATS is not connected: the messages will be delivered again"
        ) from None
    for message in handles:
        internals.mark_acked(message)


async def _consumer_state(js: Any, queue: names.Queue) -> dict[str, int]:
    info = await js.consumer_info(queue.stream, queue.durable)
    return {
        "num_pending": int(info.num_pending or 0),
        "num_ack_pending": int(info.num_ack_pending or 0),
        "num_redelivered": int(info.num_redelivered or 0),
    }


async def _close(nc: Any) -> None:
    # Not drain(): it cancels its own subscription tasks, and that cancellation escapes into
    # the trio side. Every message in hand is settled before this point anyway.
    try:
        await nc.close()
    except Exception as exc:  # a connection that is already broken has nothing left to close
        log.debug("closing the NATS connection: %s", exc)
