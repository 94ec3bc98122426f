"""Helpers for tests that talk to real Redis and NATS through the bridge."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from shared import names
from shared.bridge import RedisGateway, open_bridge
from shared.nats import JetStream


@asynccontextmanager
async def bridged_redis(url: str) -> AsyncIterator[RedisGateway]:
    """A Redis gateway inside a running bridge."""
    async with open_bridge():
        redis = await RedisGateway.connect(url)
        try:
            yield redis
        finally:
            await redis.aclose()


@asynccontextmanager
async def bridged(redis_url: str, nats_url: str) -> AsyncIterator[tuple[RedisGateway, JetStream]]:
    """Redis and JetStream gateways inside a running bridge, topology created."""
    async with open_bridge():
        redis = await RedisGateway.connect(redis_url)
        jetstream = await JetStream.connect(nats_url, None, "test")
        assert await jetstream.ensure_topology() == []
        try:
            yield redis, jetstream
        finally:
            await jetstream.aclose()
            await redis.aclose()


async def start_test_record(
    redis: RedisGateway, test_id: str = "t-test", dedup_window: int = 5000
) -> None:
    """Make ``test_id`` the running test, as the generator does."""
    await redis.call(
        "HSET",
        names.TEST_CURRENT,
        "id",
        test_id,
        "state",
        "generating",
        "key_prefix",
        names.GEN_KEY_PREFIX,
        "num_keys",
        0,
        "key_delay",
        0,
        "key_ttl",
        100,
        "dedup_window",
        dedup_window,
    )


async def add_due(redis: RedisGateway, keys: list[str], deadline_ms: int | None = None) -> int:
    """Register ``keys`` as due at ``deadline_ms`` (default now) without writing the keys:
    as if they had been registered and had expired unheard."""
    deadline = deadline_ms if deadline_ms is not None else int(time.time() * 1000)
    flat: list[str | int] = []
    for key in keys:
        flat += [deadline, key]
    await redis.call("ZADD", names.EXPIRY_DUE, *flat)
    return deadline


def expired(key: str) -> tuple[str, str]:
    """The event a listener passes on when it hears ``key`` expire."""
    return (names.EXPIRED_EVENT, key)


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = 15) -> None:
    """Await ``check`` until true; fail after ``limit_s`` seconds.

    Polling, because what is checked lives in Redis or NATS, not in an event of this process.
    """
    with trio.fail_after(limit_s):
        while not await check():  # noqa: ASYNC110
            await trio.sleep(0.05)
