"""A trio-native Redis pub/sub subscriber, for the hot path of the expiry listener.

Every consumer hears every expiry in the system, so reading the pub/sub stream is the most
frequent thing a consumer does. Going through redis-py's asyncio pub/sub costs one bridge
crossing and one parser round trip per message; this reader takes whole socket reads, lets
hiredis (the parser redis-py itself uses) split them into messages, and hands back every message
that arrived in one read as one batch.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import trio

from shared.config import redact

_READ_SIZE = 256 * 1024


class PubSubError(ConnectionError):
    """The subscription connection failed or Redis refused a command on it."""


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to reach Redis, taken from a ``redis://`` or ``rediss://`` URL."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    #: The CA to trust for ``rediss://`` (the URL's ``ssl_ca_certs``, as redis-py reads it).
    ca_file: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Parse ``url`` (the format of ``REDIS_URL``)."""
        parts = urlsplit(url)
        path = parts.path.lstrip("/")
        ca_files = parse_qs(parts.query).get("ssl_ca_certs", [])
        try:
            db = int(path) if path else 0
        except ValueError:
            raise PubSubError(f"bad database number in {redact(url)}") from None
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "rediss",
            ca_file=ca_files[-1] if ca_files else None,
        )


def is_pattern(channel: str) -> bool:
    """Whether ``channel`` is a pattern (has glob characters after its ``__:`` prefix)."""
    name = channel.split("__:", 1)[-1]
    return any(c in name for c in "*?[")


def _encode(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Subscriber:
    """One subscription connection; ``receive_batch`` returns the payloads of ``message``s."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._reader = hiredis.Reader()

    @classmethod
    async def connect(cls, address: RedisAddress, channel: str) -> Subscriber:
        """Connect, authenticate and subscribe to ``channel``; returns once subscribed.

        A ``channel`` with glob characters (``*?[``) after its ``__:`` is a pattern
        (PSUBSCRIBE), as for the keyspace channels ``__keyspace@0__:<key pattern>``;
        several channels are separated by ``,,``.
        """
        stream: trio.abc.Stream = await trio.open_tcp_stream(address.host, address.port)
        if address.tls:
            context = ssl.create_default_context(cafile=address.ca_file)
            stream = trio.SSLStream(stream, context, server_hostname=address.host)
        subscriber = cls(stream)
        try:
            if address.password is not None:
                auth: tuple[str, ...] = (address.password,)
                if address.username:
                    auth = (address.username, address.password)
                await subscriber._command(_encode("AUTH", *auth))
            for one in channel.split(",,"):
                command = "PSUBSCRIBE" if is_pattern(one) else "SUBSCRIBE"
                await stream.send_all(_encode(command, one))
                reply = await subscriber._reply()
                if not (isinstance(reply, list) and reply[:1] == [command.lower().encode()]):
                    raise PubSubError(f"{command} {one} answered {reply!r}")
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return subscriber

    async def _command(self, payload: bytes) -> object:
        await self._stream.send_all(payload)
        return await self._reply()

    async def _reply(self) -> object:
        while True:
            reply = self._reader.gets()
            if reply is not False:
                if isinstance(reply, hiredis.ReplyError):
                    raise PubSubError(str(reply))
                return reply
            await self._fill()

    async def _fill(self) -> None:
        data = await self._stream.receive_some(_READ_SIZE)
        if not data:
            raise PubSubError("Redis closed the subscription connection")
        self._reader.feed(bytes(data))

    async def receive_batch(self) -> list[bytes]:
        """Wait for at least one read from the socket; return the expired keys it held.

        A keyevent message carries the key as its payload; a keyspace message (from a pattern)
        carries it in its channel, ``__keyspace@<db>__:<key>``, with the payload ``expired``.
        """
        keys: list[bytes] = []
        while not keys:
            await self._fill()
            while (reply := self._reader.gets()) is not False:
                if not isinstance(reply, list):
                    continue
                if len(reply) == 3 and reply[0] == b"message":
                    if not reply[1].startswith(b"__keyspace@"):
                        keys.append(reply[2])
                    elif reply[2] == b"expired":
                        keys.append(reply[1].split(b"__:", 1)[1])
                elif len(reply) == 4 and reply[0] == b"pmessage" and reply[3] == b"expired":
                    keys.append(reply[2].split(b"__:", 1)[1])
        return keys

    async def aclose(self) -> None:
        """Close the connection."""
        await self._stream.aclose()
