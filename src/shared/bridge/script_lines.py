"""Lua script calls on one Redis server straight from trio: the pipeline's hot path.

Every key the pipeline handles costs a few script calls (claim, complete, mark queued), and
at one key per ms nearly each of them is a call of its own. Through redis-py and the bridge
one such call cost 200 to 260 µs of CPU (measured; asyncio alone under 100). Here a small
pool of connections speaks RESP itself, with hiredis (the parser redis-py uses) reading the
replies: the same ``EVALSHA`` commands, one round trip per batch, no crossing.

Failures mirror the redis-py client the gateway uses for everything else: a dropped
connection or a timeout is retried on a fresh connection with exponential back-off (every
script of this system is safe to run twice), then raised as redis-py's own exceptions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from hashlib import sha1
from typing import Any

import hiredis
import trio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.pubsub import auth_command, encode_command, open_stream
from shared.redis import _internals as redis_internals
from shared.redis_address import RedisAddress

#: One call of a script: its KEYS and its ARGV.
ScriptCall = tuple[Sequence[str], Sequence[str | int]]

CONNECT_TIMEOUT_S = 5.0
#: A reply that takes longer than this counts as a failure (redis-py's ``socket_timeout``).
REPLY_TIMEOUT_S = 10.0
RETRIES = 4
_LINE_FAILURES = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    RedisConnectionError,
    trio.TooSlowError,
)
_READ_SIZE = 64 * 1024


def _error(reply: hiredis.ReplyError) -> Exception:
    """The exception redis-py raises for this error reply (see ``shared.redis._internals``)."""
    return redis_internals.error_of(str(reply))


class _Line:
    """One connection: commands out, replies in, one caller at a time."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._reader = hiredis.Reader(encoding="utf-8", errors="replace")

    @classmethod
    async def open(cls, address: RedisAddress) -> _Line:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await open_stream(address)
            line = cls(stream)
            try:
                setup: list[Sequence[str | int | float | bytes]] = []
                if (auth := auth_command(address)) is not None:
                    setup.append(auth)
                if address.db:
                    setup.append(["SELECT", address.db])
                if setup:
                    for reply in await line.run(setup):
                        if isinstance(reply, Exception):
                            raise reply
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
        return line

    async def run(self, commands: Sequence[Sequence[str | int | float | bytes]]) -> list[Any]:
        """Send ``commands`` in one write; their replies (errors as exceptions, not raised)."""
        await self._stream.send_all(b"".join(encode_command(c) for c in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is False:
                data = await self._stream.receive_some(_READ_SIZE)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                self._reader.feed(bytes(data))
                continue
            replies.append(_error(reply) if isinstance(reply, hiredis.ReplyError) else reply)
        return replies

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


class ScriptLines:
    """A pool of trio-native connections to one Redis server, for ``EVALSHA`` batches."""

    def __init__(self, address: RedisAddress) -> None:
        self._address = address
        self._idle: list[_Line] = []
        self._closed = False
        self._shas: dict[str, str] = {}

    async def scripts(self, source: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """Run the Lua ``source`` once per ``(keys, args)`` in one round trip; the replies."""
        sha = self._shas.get(source)
        if sha is None:
            sha = self._shas[source] = sha1(source.encode()).hexdigest()
        commands = [["EVALSHA", sha, len(keys), *keys, *args] for keys, args in calls]
        replies = await self._run(commands)
        if any(isinstance(r, NoScriptError) for r in replies):
            # A server that has not run it yet (new, restarted): load it, then run them again.
            loaded = await self._run([["SCRIPT", "LOAD", source], *commands])
            replies = loaded[1:]
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def commands(self, commands: Sequence[Sequence[str | int | float | bytes]]) -> list[Any]:
        """Run ``commands`` in one round trip; their replies as RESP gives them.

        The first error reply is raised; errors inside an ``EXEC`` reply are left in place,
        as the exceptions redis-py gives (a transaction's caller decides what they mean).
        """
        replies = await self._run(commands)
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, list) and any(isinstance(r, hiredis.ReplyError) for r in reply):
                replies[i] = [_error(r) if isinstance(r, hiredis.ReplyError) else r for r in reply]
        return replies

    async def _run(self, commands: Sequence[Sequence[str | int | float | bytes]]) -> list[Any]:
        for attempt in range(RETRIES + 1):
            line: _Line | None = None
            try:
                line = self._idle.pop() if self._idle else await _Line.open(self._address)
                with trio.fail_after(REPLY_TIMEOUT_S):
                    replies = await line.run(commands)
            except _LINE_FAILURES as exc:
                if line is not None:
                    await line.aclose()
                if attempt == RETRIES:
                    if isinstance(exc, trio.TooSlowError):
                        raise RedisTimeoutError("Redis did not answer in time") from None
                    raise RedisConnectionError(f"cannot reach Redis: {exc}") from exc
                await trio.sleep(min(1.0, 0.05 * 2**attempt) * random.random())
                continue
            except BaseException:
                if line is not None:
                    with trio.CancelScope(shield=True):
                        await line.aclose()  # cancelled mid-reply: its stream is out of step
                raise
            if self._closed:
                await line.aclose()
            else:
                self._idle.append(line)
            return replies
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close every idle connection (those in use close when their call ends)."""
        self._closed = True
        while self._idle:
            await self._idle.pop().aclose()
