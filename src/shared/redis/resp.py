"""One connection to one Redis node from trio: commands written in RESP, replies read by hiredis
(the parser redis-py itself uses). The pub/sub subscribers and the script connections both
speak to Redis through it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from typing import Any, Self

import hiredis
import trio
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.redis import _internals
from shared.redis.address import RedisAddress

#: Bytes asked of the socket per read: a burst of events arrives in few reads.
READ_SIZE = 256 * 1024

#: One command: its name and arguments.
Command = Sequence[str | int | float | bytes]


def encode_command(args: Command) -> bytes:
    """One command in RESP, as Redis reads it."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def open_stream(address: RedisAddress) -> trio.abc.Stream:
    """A connection to ``address``, TLS-wrapped for ``rediss`` (not yet authenticated)."""
    stream: trio.abc.Stream
    if address.socket_path is not None:
        stream = await trio.open_unix_socket(address.socket_path)
    else:
        stream = await trio.open_tcp_stream(address.host, address.port)
    if address.tls:
        context = ssl.create_default_context(cafile=address.ca_file)
        stream = trio.SSLStream(stream, context, server_hostname=address.host)
    return stream


def setup_commands(address: RedisAddress, select_db: bool) -> list[Command]:
    """``AUTH`` with ``address``'s credentials (when it has a password), then, with
    ``select_db``, ``SELECT`` of its database (when not 0)."""
    setup: list[Command] = []
    if address.password is not None:
        setup.append(["AUTH", *filter(None, [address.username]), address.password])
    if select_db and address.db:
        setup.append(["SELECT", address.db])
    return setup


class RespConnection:
    """Commands out, replies in, one caller at a time.

    Error replies become the exceptions redis-py raises for them (``OutOfMemoryError``,
    ``NoScriptError``, ``AuthenticationError``…); a connection Redis closed raises redis-py's
    ``ConnectionError``. ``encoding`` decodes bulk strings (None: bytes, as pub/sub wants).
    """

    def __init__(self, stream: trio.abc.Stream, encoding: str | None = None) -> None:
        self._stream = stream
        self._reader = (
            hiredis.Reader(encoding=encoding, errors="replace") if encoding else hiredis.Reader()
        )

    @classmethod
    async def open(
        cls, address: RedisAddress, *, encoding: str | None = None, select_db: bool = False
    ) -> Self:
        """Connect to ``address`` and authenticate (and select its database, with
        ``select_db``) in one round trip; returns once Redis accepted them."""
        stream = await open_stream(address)
        connection = cls(stream, encoding)
        try:
            if setup := setup_commands(address, select_db):
                for reply in await connection.run(setup):
                    if isinstance(reply, Exception):
                        raise reply
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return connection

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write; their replies, error replies as exceptions (not
        raised; inside an array, such as ``EXEC``'s, see ``errors_inside``)."""
        await self._stream.send_all(b"".join(encode_command(c) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                await self.receive()
                continue
            if isinstance(reply, hiredis.ReplyError):
                reply = _internals.error_of(str(reply))
            replies.append(reply)
        return replies

    async def command(self, *args: str | int | bytes) -> Any:
        """Send one command; its reply (an error reply is raised)."""
        reply = (await self.run([args]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def receive(self) -> None:
        """Wait for the next read from the socket (its replies then come from ``replies``)."""
        data = await self._stream.receive_some(READ_SIZE)
        if not data:
            raise RedisConnectionError("Redis closed the connection")
        self._reader.feed(bytes(data))

    def replies(self) -> Iterator[Any]:
        """The replies read whole so far (what a subscriber was sent)."""
        while (reply := self._reader.gets()) is not False:
            yield reply

    async def aclose(self) -> None:
        """Close the connection."""
        await trio.aclose_forcefully(self._stream)


def errors_inside(reply: Any) -> Any:
    """An array ``reply`` (``EXEC``'s) with the error replies in it as redis-py's exceptions."""
    if isinstance(reply, list) and any(isinstance(r, hiredis.ReplyError) for r in reply):
        return [
            _internals.error_of(str(r)) if isinstance(r, hiredis.ReplyError) else r for r in reply
        ]
    return reply
