"""Writing a test's keys: one batch at a time, each checked against the current test, each
retried without writing a key twice."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from generator.test_store import TestStore
from shared import names
from shared.bridge import RedisError, RedisGateway
from shared.bridge.redis_io import Command
from shared.names import KeyLayout
from shared.registration import ensure_library, is_missing_function, register_stages, run_stages

log = logging.getLogger(__name__)


def write_stages(
    layout: KeyLayout, test_id: str, keys: Sequence[str], generated: int, ttl_ms: int
) -> list[list[Command]]:
    """The pipelines writing ``keys``, to run in order, and setting the generated count.

    The keys are registered with the pipeline (``shared.registration.register_stages``), so a
    key whose expiry nobody heard is still recovered. The generated count is set, not added
    to, so that the pipelines can be retried after a dropped connection. On one server they
    are one transaction: Redis at ``maxmemory`` refuses all of it or none of it, so the count
    never misses keys that were written (``batch_test_id`` reads the replies).
    """
    items = [(key, test_id) for key in keys]
    stages: list[list[Command]] = (
        [list(stage) for stage in register_stages(layout, items, ttl_ms)] if items else [[]]
    )
    stages[0].insert(0, ("HGET", names.TEST_CURRENT, "id"))
    stages[-1].append(("SET", names.METRICS_GENERATED, generated))
    if not layout.cluster:
        stages[0] = [("MULTI",), *stages[0], ("EXEC",)]
    return stages


def batch_test_id(layout: KeyLayout, replies: Sequence[Any]) -> str | None:
    """The current test's id, from the replies of ``write_stages`` (another id than the
    writer's means Redis lost its test); an error inside the transaction is raised."""
    if layout.cluster:
        return replies[0]  # type: ignore[no-any-return]
    executed = replies[-1]
    for reply in executed:
        if isinstance(reply, Exception):
            raise reply
    return executed[0]  # type: ignore[no-any-return]


async def unwritten(redis: RedisGateway, keys: Sequence[str]) -> list[str]:
    """The ``keys`` of which Redis holds no trace: not registered, not claimed, not consumed.

    What a retried batch writes. A failed attempt may have been partly applied (on a cluster,
    the masters that answered took their part), and some of its keys may already have expired
    and been handled: writing those again would make a second key of the same name.
    """
    layout = redis.layout
    commands: list[Command] = []
    order: list[str] = []
    for group, part in layout.by_group(keys).items():
        for key in part:
            order.append(key)
            commands += [
                ("ZSCORE", group.name(names.EXPIRY_DUE), key),
                ("EXISTS", group.dedup(key)),
                ("HEXISTS", group.name(names.TEST_CONSUMED), key),
            ]
    replies = await redis.pipeline(commands)
    traced = {
        key
        for i, key in enumerate(order)
        if replies[3 * i] is not None or int(replies[3 * i + 1]) or int(replies[3 * i + 2])
    }
    return [key for key in keys if key not in traced]


def keys_due(elapsed_s: float, delay_ms: int, written: int, total: int) -> int:
    """How many more keys are due ``elapsed_s`` into a test writing one key per ``delay_ms``."""
    due = int(elapsed_s * 1000 // delay_ms) if delay_ms else total
    return max(0, min(total, due) - written)


async def write_batch(
    redis: RedisGateway,
    store: TestStore,
    test_id: str,
    first: int,
    count: int,
    ttl_ms: int,
    retry: bool,
) -> str | None:
    """Keys ``first`` to ``first + count - 1``; the current test's id, read in the same round
    trip (another id than ``test_id`` means Redis lost this test, and nothing was written
    into it).

    A retry first asks which of the keys the failed attempt wrote after all (its answer
    lost with the connection; on a cluster, the masters that answered took their part):
    it writes only the keys Redis has no trace of, since writing one again would register
    a key already consumed.
    """
    keys = [names.gen_key(seq) for seq in range(first, first + count)]
    if retry:
        current = await store.current_id()
        if current != test_id:
            return current
        keys = await unwritten(redis, keys)
        if len(keys) < count:
            log.info(
                "a retried batch: %d of its %d keys were written already", count - len(keys), count
            )
    layout = redis.layout
    stages = write_stages(layout, test_id, keys, first + count, ttl_ms)
    try:
        return batch_test_id(layout, await run_stages(redis, stages))
    except RedisError as exc:
        if not is_missing_function(exc):
            raise
    # Redis lost its functions: a restart without its data, or a FUNCTION FLUSH. On one
    # server the transaction set the count without the keys: the retry writes them.
    current = await store.current_id()
    if current != test_id:
        return current
    await ensure_library(redis)
    return batch_test_id(layout, await run_stages(redis, stages))
