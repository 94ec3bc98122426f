"""Every access to nats-py's private internals, in one place, checked at import.

The pipeline reaches past nats-py's public API in four places, each for a reason measured on
the hot path or a field nats-py does not expose:

- **Writing on the connection** (``write``): batches of publishes and acks go out as one
  write from trio, as nats-py's flusher would write them, instead of one asyncio task step each.
- **A subscription's message queue** (``hand_off``): nats-py puts every message it reads into
  ``Subscription._pending_queue``; replacing that queue hands each message to trio at once,
  with no asyncio task woken per message.
- **JetStream API requests** (``api_request``): the consumer's priority groups, which
  nats-py's ``ConsumerConfig`` drops.
- **A message's client and its acked flag** (``client_of``, ``mark_acked``): acks written in
  a batch mark the messages acked, as ``Msg.ack`` does.

``PROBLEM`` says what differs in the installed nats-py (None when nothing does), and
``shared.libraries.require`` raises it: a renamed attribute would otherwise silently starve
the pull feed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.aio.transport import Transport

from shared.libraries import LibraryMismatch, mismatch

DISTRIBUTION = "nats-py"


def write(nc: Client, data: bytes) -> None:
    """Write whole protocol commands on the connection, from trio, as nats-py's flusher would
    (asyncio's transport buffers what the socket does not take at once)."""
    transport = nc._transport
    if not nc.is_connected or transport is None:
        raise ConnectionError("NATS is not connected")
    transport.write(data)


def hand_off(subscription: Subscription, deliver: Callable[[Any], None]) -> None:
    """Have each message nats-py reads for ``subscription`` go to ``deliver`` at once (inside
    the trio run, where trio-asyncio runs nats-py's reader) instead of into its queue."""
    subscription._pending_queue = _Handoff(subscription, deliver)


async def api_request(js: Any, subject: str, payload: bytes) -> dict[str, Any]:
    """JetStream's raw JSON answer to ``$JS.API.<subject>`` (under the context's prefix)."""
    reply: dict[str, Any] = await js._api_request(
        f"{js._prefix}.{subject}", payload, timeout=js._timeout
    )
    return reply


def client_of(message: Msg) -> Client:
    """The connection ``message`` came in on."""
    return message._client


def mark_acked(message: Msg) -> None:
    """Record that ``message`` was acknowledged (its ack written by ``write``)."""
    message._ackd = True


class _Handoff(asyncio.Queue[Any]):
    """A subscription's message queue that hands each message on at once, to ``deliver``."""

    def __init__(self, subscription: Subscription, deliver: Callable[[Any], None]) -> None:
        super().__init__()
        self._subscription = subscription
        self._deliver = deliver

    def put_nowait(self, item: Any) -> None:
        # nats-py counted the message's bytes as pending; they are trio's to hold now.
        self._subscription._pending_size -= len(item.data)
        self._deliver(item)


def check() -> list[str]:
    """What differs, in the installed nats-py, from the internals used above."""
    problems: list[str] = []
    try:
        nc = Client()
        if not hasattr(nc, "_transport"):
            problems.append("Client has no _transport")
        if not callable(getattr(Transport, "write", None)):
            problems.append("Transport has no write()")
        reader = inspect.getsource(Client._process_msg)
        for needed in ("sub._pending_size += payload_size", "sub._pending_queue.put_nowait(msg)"):
            if needed not in reader:
                problems.append(f"Client._process_msg no longer does {needed!r}")
        subscription = Subscription(nc, 1, "check")
        if not isinstance(getattr(subscription, "_pending_queue", None), asyncio.Queue):
            problems.append("Subscription has no _pending_queue")
        if not isinstance(getattr(subscription, "_pending_size", None), int):
            problems.append("Subscription has no _pending_size")
        js = nc.jetstream()
        if not inspect.iscoroutinefunction(getattr(js, "_api_request", None)):
            problems.append("JetStreamContext has no async _api_request()")
        if not isinstance(getattr(js, "_prefix", None), str):
            problems.append("JetStreamContext has no _prefix")
        if not hasattr(js, "_timeout"):
            problems.append("JetStreamContext has no _timeout")
        fields = {field.name for field in dataclasses.fields(Msg)}
        problems += [f"Msg has no field {name}" for name in sorted({"_client", "_ackd"} - fields)]
        if "self._ackd = True" not in inspect.getsource(Msg.ack):
            problems.append("Msg.ack no longer sets _ackd")
    except Exception as exc:  # a constructor's signature changed, a source is missing…
        problems.append(f"checking its internals failed: {exc!r}")
    return problems


#: What differs in the installed nats-py, found at import; None when nothing does.
PROBLEM: LibraryMismatch | None = mismatch(DISTRIBUTION, check())
