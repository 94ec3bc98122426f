"""Registering expiring keys with the pipeline: the Redis function library and its helpers.

A producer that registers a key (``FCALL expiry_register``) gets the stronger promise: the key
is processed even when no consumer heard its expiry. ``expiry_cancel`` and
``expiry_reschedule`` cancel or move a key's expiry with a definite answer. Consumers load the
library at start-up (``ensure_library``, idempotent and versioned); trio code registers,
cancels and reschedules keys with ``Registry``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from shared import names, scripts
from shared.bridge import RedisError, RedisGateway, open_bridge
from shared.bridge.redis_io import Command
from shared.names import KeyLayout

log = logging.getLogger(__name__)


class FunctionsUnsupported(RuntimeError):
    """This Redis has no Functions (``FUNCTION LOAD`` needs Redis 7.0 or later)."""


def is_missing_function(exc: Exception) -> bool:
    """Whether ``exc`` says the function library is not loaded."""
    return "function not found" in str(exc).lower()


async def library_version(redis: RedisGateway) -> int | None:
    """The version of the library loaded in Redis, or None when it is not loaded."""
    try:
        return int(await redis.call("FCALL_RO", names.FN_VERSION, 0))
    except RedisError as exc:
        if is_missing_function(exc):
            return None
        if "unknown command" in str(exc).lower():
            raise FunctionsUnsupported(str(exc)) from None
        raise


async def ensure_library(redis: RedisGateway) -> int:
    """Load the function library unless this version (or a newer one) is there; its version.

    Safe when several processes do it at once: ``FUNCTION LOAD REPLACE`` is atomic and they all
    load the same code. A newer library (a fleet being upgraded) is left in place.
    """
    loaded = await library_version(redis)
    wanted = scripts.FUNCTION_LIBRARY_VERSION
    if loaded is not None and loaded >= wanted:
        return loaded
    try:
        await redis.function_load(scripts.FUNCTION_LIBRARY)
    except RedisError as exc:
        if "unknown command" in str(exc).lower():
            raise FunctionsUnsupported(str(exc)) from None
        raise
    log.info("loaded the Redis function library %s version %d", names.FUNCTION_LIBRARY, wanted)
    return wanted


def register_many_command(items: Sequence[tuple[str, str]], ttl_ms: int) -> tuple[str | int, ...]:
    """The ``FCALL expiry_register_many`` command registering ``(key, value)`` pairs (one
    server: keys and registry written together)."""
    keys = [key for key, _ in items]
    values = [value for _, value in items]
    return (
        "FCALL",
        names.FN_REGISTER_MANY,
        len(keys) + 1,
        *keys,
        names.EXPIRY_DUE,
        ttl_ms,
        *values,
    )


def register_stages(
    layout: KeyLayout, items: Sequence[tuple[str, str]], ttl_ms: int
) -> list[list[tuple[str | int, ...]]]:
    """The pipelines that write and register ``(key, value)`` pairs, to run one after another.

    On one server, one atomic ``expiry_register_many``. On a cluster a key and its group's
    registry live in different slots: each group's keys are registered first
    (``expiry_register_due``), and written only once that succeeded (a second pipeline: one
    pipeline's commands to different masters may land in any order). A producer that dies in
    between leaves a registration without its key, which the sweepers take for a key deleted
    before it expired and process once at its deadline: nothing registered is lost, in
    exchange for that. The first reply of the first stage is a deadline either way.
    """
    if not layout.cluster:
        return [[register_many_command(items, ttl_ms)]]
    keys = [key for key, _ in items]
    registrations: list[tuple[str | int, ...]] = [
        ("FCALL", names.FN_REGISTER_DUE, 1, group.name(names.EXPIRY_DUE), ttl_ms, *part)
        for group, part in layout.by_group(keys).items()
    ]
    return [registrations, [("SET", key, value, "PX", ttl_ms) for key, value in items]]


async def run_stages(redis: RedisGateway, stages: Sequence[Sequence[Command]]) -> list[Any]:
    """Run pipelines one after another; the replies of all of them, in order.

    Their replies are plain (ids, deadlines, OK), so on one server they go straight from trio
    (``RedisGateway.commands``): a producer writing keys at a steady pace pays one round trip
    per batch and no bridge crossing.
    """
    replies: list[Any] = []
    for stage in stages:
        replies += await redis.commands(stage)
    return replies


class Registry:
    """Writes keys with a TTL and registers their deadlines, for trio code.

    Reloads the function library by itself when Redis lost it (a restart without persistence).
    """

    def __init__(self, redis: RedisGateway) -> None:
        self.redis = redis

    async def register(self, key: str, value: str, ttl_ms: int) -> int:
        """Write ``key`` = ``value`` expiring in ``ttl_ms`` and register it; its deadline (ms)."""
        return await self.register_many([(key, value)], ttl_ms)

    async def register_many(self, items: Sequence[tuple[str, str]], ttl_ms: int) -> int:
        """Write and register ``(key, value)`` pairs with one TTL in one call; their deadline."""
        if not items:
            raise ValueError("nothing to register")
        stages = register_stages(self.redis.layout, items, ttl_ms)
        return int((await self._run(stages))[0])

    async def cancel(self, key: str) -> bool:
        """Cancel ``key``'s expiry: delete the key and its registration, unless it fired.

        True: cancelled before it fired, it will never be handled. False: too late, it fired
        (it is handled exactly once), or there was no such key. Atomic on one server
        (``FCALL expiry_cancel``). On a cluster two steps: the key is deleted first, which
        decides the answer, then its registration.
        """
        layout = self.redis.layout
        if not layout.cluster:
            command = ("FCALL", names.FN_CANCEL, 2, key, names.EXPIRY_DUE)
            return bool(int((await self._run([[command]]))[0]))
        check_key(key)
        if not int(await self.redis.call("DEL", key)):
            return False
        await self.redis.call("ZREM", layout.group_of(key).name(names.EXPIRY_DUE), key)
        return True

    async def reschedule(self, key: str, ttl_ms: int) -> int | None:
        """Move ``key``'s deadline to ``ttl_ms`` from now, key and registration together; the
        new deadline (unix ms), or None when the key is gone (it fired: nothing moved).

        Atomic on one server (``FCALL expiry_reschedule``); on a cluster the key's TTL is moved
        first, then its registration.
        """
        layout = self.redis.layout
        if not layout.cluster:
            command = ("FCALL", names.FN_RESCHEDULE, 2, key, names.EXPIRY_DUE, ttl_ms)
            return int((await self._run([[command]]))[0]) or None
        check_key(key)
        check_ttl(ttl_ms)
        moved, deadline = await self.redis.pipeline(
            [("PEXPIRE", key, ttl_ms), ("PEXPIRETIME", key)]
        )
        if not int(moved):
            return None
        registry = layout.group_of(key).name(names.EXPIRY_DUE)
        await self.redis.call("ZADD", registry, int(deadline), key)
        return int(deadline)

    async def _run(self, stages: Sequence[Sequence[Command]]) -> list[Any]:
        """``run_stages``, loading the function library first when Redis lost it."""
        try:
            return await run_stages(self.redis, stages)
        except RedisError as exc:
            if not is_missing_function(exc):
                raise
        await ensure_library(self.redis)
        return await run_stages(self.redis, stages)


def check_key(key: str) -> None:
    """Refuse a key the pipeline cannot take as an application's (as the library does)."""
    if not key or key.startswith(names.INTERNAL_PREFIXES):
        raise ValueError(f"cannot register {key!r}: dedup: and expiry: keys belong to the pipeline")


def check_ttl(ttl_ms: int) -> None:
    """Refuse a TTL that is not a positive whole number of milliseconds (as the library does)."""
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 1:
        raise ValueError(f"ttl_ms must be a positive whole number of milliseconds, got {ttl_ms!r}")


@asynccontextmanager
async def open_registry(redis_url: str) -> AsyncIterator[Registry]:
    """A ``Registry`` on its own connection, for a trio program that has none to Redis yet::

    async with open_registry("redis://localhost:6379/0") as registry:
        await registry.register("session:42", "user-7", ttl_ms=30_000)
    """
    async with open_bridge():
        redis = await RedisGateway.connect(redis_url)
        try:
            await ensure_library(redis)
            yield Registry(redis)
        finally:
            await redis.aclose()
