"""Running one load test: reset, write the keys, wait for their consumption, give a verdict."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Sequence

import trio

from generator.status import RUNNING_STATES, read_snapshot, verdict
from generator.validation import TestConfig
from shared import names, telemetry
from shared.bridge import RedisError, RedisGateway
from shared.bridge.redis_io import Command
from shared.registration import ensure_library, is_missing_function, register_many_command

log = logging.getLogger(__name__)

#: Keys per pipeline when writing as fast as possible.
CHUNK = 500
DRAIN_POLL_S = 0.2
#: The paced writer wakes at most this often; keys that fell due meanwhile go in one pipeline.
PACE_TICK_S = 0.005


class TestAlreadyRunning(RuntimeError):
    """A test is running; one at a time."""


def new_test_id() -> str:
    """A unique, sortable, readable test id."""
    return time.strftime("t-%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def write_commands(test_id: str, first: int, count: int, ttl_ms: int) -> list[Command]:
    """One pipeline writing keys ``first``..``first+count-1``.

    The keys are registered with the pipeline (``expiry_register_many``: each key and its
    deadline written together), so a key whose expiry nobody heard is still recovered. The
    generated count is set, not added to, so that the pipeline can be retried after a dropped
    connection.
    """
    items = [(names.gen_key(seq), test_id) for seq in range(first, first + count)]
    return [
        register_many_command(items, ttl_ms),
        ("SET", names.METRICS_GENERATED, first + count),
    ]


def keys_due(elapsed_s: float, delay_ms: int, written: int, total: int) -> int:
    """How many more keys are due ``elapsed_s`` into a test writing one key per ``delay_ms``."""
    due = int(elapsed_s * 1000 // delay_ms) if delay_ms else total
    return max(0, min(total, due) - written)


class TestRunner:
    """Owns the one test that may run at a time."""

    def __init__(self, redis: RedisGateway, drain_timeout_s: float) -> None:
        self._redis = redis
        self._drain_timeout_s = drain_timeout_s
        self._stop_requested = trio.Event()
        self._end_drain = trio.Event()
        self._draining = False
        self._running = False
        self.test_id: str | None = None
        self.changed = trio.Event()

    async def recover_interrupted(self, nursery: trio.Nursery) -> None:
        """At start-up: a test left running by an earlier generator process is interrupted.

        Its keys are still consumed; watch them drain and give the verdict.
        """
        test = await self._redis.call("HGETALL", names.TEST_CURRENT)
        if test and test.get("state") in RUNNING_STATES:
            log.warning("test %s was interrupted by a generator restart", test.get("id"))
            await self._redis.call("HSET", names.TEST_CURRENT, "state", "interrupted")
            self._running = True
            self.test_id = test.get("id")
            nursery.start_soon(self._finish_interrupted)

    async def _finish_interrupted(self) -> None:
        try:
            await self._drain(final_state="interrupted")
        finally:
            self._running = False

    async def start(self, config: TestConfig, nursery: trio.Nursery) -> str:
        """Reset earlier state and start a test in ``nursery``; returns its id."""
        if self._running:
            raise TestAlreadyRunning("a test is already running")
        self._running = True
        try:
            test_id = new_test_id()
            await self._reset(test_id, config)
        except BaseException:
            self._running = False
            raise
        self.test_id = test_id
        self._stop_requested = trio.Event()
        self._end_drain = trio.Event()
        self._draining = False
        telemetry.TESTS.inc()
        log.info("test %s started: %s", test_id, config.as_dict())
        nursery.start_soon(self._run, test_id, config)
        self._notify()
        return test_id

    def stop(self) -> bool:
        """Stop generating (or, once all keys are written, stop waiting for them).

        False when no test runs.
        """
        if not self._running:
            return False
        if self._draining:
            self._end_drain.set()
        self._stop_requested.set()
        return True

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def _reset(self, test_id: str, config: TestConfig) -> None:
        """Make the new test the current one, then clear everything earlier tests left.

        The id changes first, so consumers still finishing an earlier test's messages see them
        as stale instead of counting them into this one.
        """
        redis = self._redis
        old_consumers = await redis.call("SMEMBERS", names.METRICS_CONSUMERS)
        await redis.pipeline(
            [
                ("DEL", names.TEST_CURRENT),
                (
                    "HSET",
                    names.TEST_CURRENT,
                    "id",
                    test_id,
                    "state",
                    "starting",
                    "key_prefix",
                    names.GEN_KEY_PREFIX,
                    *_flatten(config.as_dict()),
                ),
                (
                    "UNLINK",
                    *names.PER_TEST_KEYS,
                    names.METRICS_CONSUMERS,
                    *[names.consumer_count_key(c) for c in old_consumers],
                ),
            ]
        )
        for pattern in (f"{names.GEN_KEY_PREFIX}*", names.dedup_key(f"{names.GEN_KEY_PREFIX}*")):
            removed = await redis.unlink_matching(pattern)
            if removed:
                log.info("removed %d leftover %s keys", removed, pattern)
        removed = await redis.unregister_matching(names.EXPIRY_DUE, f"{names.GEN_KEY_PREFIX}*")
        if removed:
            log.info("removed %d leftover registrations of %s keys", removed, names.GEN_KEY_PREFIX)
        await ensure_library(redis)
        await redis.call(
            "HSET", names.TEST_CURRENT, "state", "generating", "started_at", repr(time.time())
        )

    async def _run(self, test_id: str, config: TestConfig) -> None:
        try:
            written = await self._generate(test_id, config)
            stopped = self._stop_requested.is_set()
            log.info(
                "test %s: %d keys written%s", test_id, written, " (stopped)" if stopped else ""
            )
            await self._redis.call(
                "HSET",
                names.TEST_CURRENT,
                "state",
                "draining",
                "generated_final",
                written,
                "generation_ended_at",
                repr(time.time()),
            )
            self._notify()
            await self._drain(final_state="stopped" if stopped else "finished")
        except Exception:
            log.exception("test %s failed", test_id)
            with trio.move_on_after(2) as cleanup:
                cleanup.shield = True
                await self._redis.call("HSET", names.TEST_CURRENT, "state", "failed")
        finally:
            self._running = False
            self._notify()

    async def _generate(self, test_id: str, config: TestConfig) -> int:
        written = 0
        total = config.num_keys
        begin = last_wake = trio.current_time()
        while written < total and not self._stop_requested.is_set():
            if config.key_delay:
                # One wake-up per due batch: at short delays, every PACE_TICK_S writes the
                # keys that fell due meanwhile in one pipeline.
                next_due = max(
                    begin + (written + 1) * config.key_delay / 1000, last_wake + PACE_TICK_S
                )
                with trio.move_on_at(next_due):
                    await self._stop_requested.wait()
                if self._stop_requested.is_set():
                    break
            last_wake = trio.current_time()
            count = keys_due(last_wake - begin, config.key_delay, written, total)
            count = max(1, min(count, CHUNK))
            await self._write(write_commands(test_id, written, count, config.key_ttl))
            written += count
            telemetry.GENERATED.inc(count)
            await trio.lowlevel.checkpoint()
        return written

    async def _write(self, commands: list[Command]) -> None:
        try:
            await self._redis.pipeline(commands)
        except RedisError as exc:
            if not is_missing_function(exc):
                raise
            await ensure_library(self._redis)  # Redis lost it (a restart without persistence)
            await self._redis.pipeline(commands)

    async def _drain(self, final_state: str) -> None:
        """Wait until every written key is consumed, or nothing moves for the drain timeout."""
        self._draining = True
        last_progress = trio.current_time()
        last_unique = -1
        while True:
            snapshot = await read_snapshot(self._redis, with_consumers=False)
            if snapshot.unique >= snapshot.generated:
                break
            if snapshot.unique != last_unique:
                last_unique, last_progress = snapshot.unique, trio.current_time()
            elif trio.current_time() - last_progress > self._drain_timeout_s:
                log.warning(
                    "test %s: no progress for %.0f s; ending with %d keys unconsumed",
                    self.test_id,
                    self._drain_timeout_s,
                    snapshot.generated - snapshot.unique,
                )
                break
            if self._end_drain.is_set():
                final_state = "stopped" if final_state == "finished" else final_state
                break
            with trio.move_on_after(DRAIN_POLL_S):
                await self._end_drain.wait()
        snapshot = await read_snapshot(self._redis, with_consumers=False)
        result = verdict(snapshot)
        await self._redis.call(
            "HSET",
            names.TEST_CURRENT,
            "state",
            final_state,
            "finished_at",
            repr(time.time()),
            "verdict",
            json.dumps(result),
        )
        log.info("test %s %s: %s", self.test_id, final_state, result)


def _flatten(mapping: dict[str, int]) -> Sequence[str | int]:
    flat: list[str | int] = []
    for key, value in mapping.items():
        flat += [key, value]
    return flat
