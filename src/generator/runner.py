"""Running one load test: reset, write the keys, wait for their consumption, give a verdict."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import trio

from generator.documents import StatusDocument, VerdictDocument
from generator.key_writer import keys_due, unwritten, write_batch
from generator.status import RUNNING_STATES, key_by_key_verdict, read_snapshot
from generator.test_store import TestStore, config_of
from generator.validation import TestConfig
from shared import names, telemetry
from shared.backoff import Backoff
from shared.bridge import RedisGateway
from shared.redis_outage import RedisOutage
from shared.registration import ensure_library

log = logging.getLogger(__name__)

#: Keys per pipeline when writing as fast as possible.
CHUNK = 500
DRAIN_POLL_S = 0.2
#: How long a start waits for the end of the previous test to be saved.
SAVE_WAIT_S = 5.0
#: The paced writer wakes at most this often; keys that fell due meanwhile go in one pipeline.
PACE_TICK_S = 0.005

T = TypeVar("T")


def new_test_id() -> str:
    """A unique, sortable, readable test id."""
    return time.strftime("t-%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


class TestAlreadyRunning(RuntimeError):
    """A test is running; one at a time."""


class NotReady(RuntimeError):
    """The generator has not yet read from Redis whether an earlier test was left running."""


class StateLost(Exception):
    """Redis no longer holds the running test's record: it restarted without its data."""


class CannotContinue(Exception):
    """Redis refused the test's work for longer than the drain timeout."""


class _Interrupted(Exception):
    """A stop arrived while waiting for Redis."""


@dataclass
class TestRecord:
    """What this process knows of the test it runs (or ran last), whatever Redis holds.

    The status overlays it on what Redis says while the test runs or while its end is not yet
    saved, so a Redis outage or restart never shows a running test as idle.
    """

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    config: TestConfig | None
    state: str = "starting"
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    verdict: VerdictDocument | None = None
    #: Whether Redis holds this record's current state.
    saved: bool = False
    #: Set once saving its end is over (saved, or given up).
    save_over: trio.Event = field(default_factory=trio.Event)

    @property
    def running(self) -> bool:
        """Whether the test still runs (starting, generating or draining)."""
        return self.state in RUNNING_STATES


def lost_state_reason(written: int) -> str:
    """Why a test ended when Redis came back without its record."""
    return (
        f"Redis restarted without its data (or was flushed) after {written:,} keys were written: "
        "this test's keys and counts are gone, so its outcome cannot be checked. Start a new "
        "test; run Redis with appendonly to keep a test across restarts."
    )


class TestRunner:
    """Owns the one test that may run at a time.

    Redis being away is a state the runner waits out: every call is retried with back-off
    (the outage is reported once, in the log and the status), and a test ends ``failed`` with
    the reason only when Redis refused its work for longer than the drain timeout.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, redis: RedisGateway, drain_timeout_s: float, outage: RedisOutage | None = None
    ) -> None:
        self._redis = redis
        self._drain_timeout_s = drain_timeout_s
        self.outage = outage or RedisOutage("generator")
        self._store = TestStore(redis)
        self._stop_requested = trio.Event()
        self._end_drain = trio.Event()
        self._draining = False
        self._running = False
        self._saving = trio.CancelScope()
        self._waited_s = 0.0
        self._last_deadline_ms = 0
        #: Set once the last test recorded in Redis has been looked at (see ``recover``).
        self.ready = False
        self.record: TestRecord | None = None
        self.changed = trio.Event()

    @property
    def test_id(self) -> str | None:
        """The id of the test running or run last by this process."""
        return self.record.test_id if self.record else None

    async def recover_interrupted(self) -> None:
        """At start-up: wait for Redis, then finish a test an earlier generator left running.

        Its keys are still consumed; watch them drain and give the verdict, as ``interrupted``.
        Whatever goes wrong, the generator goes on serving and accepts new tests.
        """
        try:
            await self._recover_interrupted()
        except Exception as exc:
            log.error(
                "cannot finish the test an earlier generator left running (%s); the next start "
                "replaces it",
                exc,
            )
            self._running = False
            self.ready = True
            self._notify()

    async def _recover_interrupted(self) -> None:
        test = await self._until_done("reading the last test", self._store.read)
        if not (test and test.get("state") in RUNNING_STATES):
            self.ready = True
            return
        test_id = test.get("id") or "unknown"
        reason = "the generator restarted during the test"
        log.warning("test %s was interrupted by a generator restart", test_id)
        record = TestRecord(
            test_id,
            config_of(test),
            state="interrupted",
            reason=reason,
            started_at=float(test["started_at"]) if test.get("started_at") else None,
        )
        self._begin(record)
        self.ready = True
        await self._until_done(
            "marking the test interrupted", partial(self._store.interrupted, reason)
        )
        expected = test.get("generated_final") or await self._until_done(
            "reading the keys generated", lambda: self._redis.call("GET", names.METRICS_GENERATED)
        )
        ttl_ms = record.config.key_ttl if record.config else 0
        # Keys written just before the restart may not be due yet.
        self._last_deadline_ms = int(time.time() * 1000) + ttl_ms
        await self._conclude(
            record, partial(self._drain, record, int(expected or 0), "interrupted")
        )

    async def start(self, config: TestConfig, nursery: trio.Nursery) -> str:
        """Reset earlier state and start a test in ``nursery``; returns its id.

        The new test is the current one from the first moment, so a stop sent while Redis is
        still being cleared stops this test, not the previous one.
        """
        if not self.ready:
            raise NotReady(
                "the generator is still waiting for Redis to read the last test; try again "
                "in a moment"
            )
        if self._running:
            raise TestAlreadyRunning("a test is already running")
        previous = self.record
        if previous is not None and not previous.saved:
            # Its end is being saved: let that land first, or it could overwrite this test's
            # record. While Redis is away it cannot, and the start fails on Redis anyway.
            with trio.move_on_after(SAVE_WAIT_S):
                await previous.save_over.wait()
            if self._running:
                raise TestAlreadyRunning("a test is already running")
        record = TestRecord(new_test_id(), config, started_at=time.time())
        self._begin(record)
        try:
            await self._reset(record.test_id, config)
        except BaseException:
            self.record = previous
            self._running = False
            self._notify()
            raise
        self.outage.clear(wrote=True)
        record.started_at = time.time()
        record.state = "generating"
        telemetry.TESTS.inc()
        log.info("test %s started: %s", record.test_id, config.as_dict())
        nursery.start_soon(self._conclude, record, partial(self._generate_and_drain, record))
        self._notify()
        return record.test_id

    def _begin(self, record: TestRecord) -> None:
        """Make ``record`` the running test, with fresh stop events; cancel any pending save."""
        self._saving.cancel()
        self._saving = trio.CancelScope()
        self._running = True
        self.record = record
        self._stop_requested = trio.Event()
        self._end_drain = trio.Event()
        self._draining = False
        self._last_deadline_ms = 0
        self._notify()

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

    def overlay(self, document: StatusDocument) -> None:
        """Correct a status ``document`` read from Redis by what this process knows.

        While a test runs, or until its end is saved, the runner is the authority on its id and
        state: Redis may be away, or may have restarted without the test's record.
        """
        record = self.record
        if record is None or (record.saved and not self._running):
            return
        if document.get("test_id") != record.test_id:
            # Redis still describes another test (the last one, while this one starts): none
            # of its figures of time may stand, or the page would take this test's later
            # samples, with a shorter elapsed time, for stale ones.
            elapsed = 0.0  # still starting: its clock starts once Redis is cleared
            if record.state != "starting" and record.started_at is not None:
                elapsed = max(0.0, (record.finished_at or time.time()) - record.started_at)
            document["test_id"] = record.test_id
            document["config"] = record.config.as_document() if record.config else None
            document["started_at"] = record.started_at
            document["finished_at"] = record.finished_at
            document["elapsed_s"] = round(elapsed, 2)
            document["verdict"] = record.verdict
        elif not record.saved:
            # Ended, but Redis does not have the end yet.
            document["finished_at"] = record.finished_at
            document["verdict"] = record.verdict
        document["state"] = record.state
        document["is_running"] = self._running and record.running
        document["reason"] = record.reason

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def _until_done(
        self,
        what: str,
        action: Callable[[], Awaitable[T]],
        *,
        give_up_s: float | None = None,
        interrupt: trio.Event | None = None,
        writes: bool = True,
    ) -> T:
        """``action()``, retried with back-off while Redis is away or refuses it.

        Raises ``CannotContinue`` once it has failed for ``give_up_s``, ``_Interrupted`` when
        ``interrupt`` is set while waiting; errors that are not about Redis's availability
        propagate at once.
        """
        backoff = Backoff(initial=0.2, cap=5.0)
        failing_since: float | None = None
        while True:
            try:
                result = await action()
            except Exception as exc:
                problem = self.outage.report(exc)
                if problem is None:
                    raise
                now = trio.current_time()
                if failing_since is None:
                    failing_since = now
                    self._notify()
                if give_up_s is not None and now - failing_since >= give_up_s:
                    raise CannotContinue(
                        f"{what} failed for {give_up_s:.0f} s: {problem.message}"
                    ) from None
                delay = backoff.delay()
                with trio.move_on_after(delay):
                    await (interrupt if interrupt is not None else trio.Event()).wait()
                self._waited_s += delay
                if interrupt is not None and interrupt.is_set():
                    raise _Interrupted from None
            else:
                self.outage.clear(wrote=writes)
                return result

    async def _conclude(
        self,
        record: TestRecord,
        work: Callable[[], Awaitable[tuple[str, VerdictDocument | None]]],
    ) -> None:
        """Run the test's ``work``, then record how it ended, whatever happened to Redis.

        A generator that is shut down leaves the test recorded as running; the next one
        reports it interrupted.
        """
        lost = False
        verdict_: VerdictDocument | None = None
        try:
            state, verdict_ = await work()
            log.info("test %s %s: %s", record.test_id, state, verdict_)
        except StateLost as exc:
            state, record.reason, lost = "interrupted", str(exc), True
            log.warning("test %s interrupted: %s", record.test_id, record.reason)
        except CannotContinue as exc:
            state, record.reason = "failed", str(exc)
            log.error("test %s failed: %s", record.test_id, record.reason)
        except Exception as exc:
            state, record.reason = "failed", f"unexpected error: {exc}"
            log.exception("test %s failed", record.test_id)
        finally:
            self._draining = False
        record.state, record.verdict, record.finished_at = state, verdict_, time.time()
        self._running = False
        self._notify()
        try:
            with self._saving:
                await self._until_done(
                    "saving the end of the test", partial(self._save_end, record, lost)
                )
                record.saved = True
                self._notify()
        except Exception as exc:
            # The status keeps showing the end from this process's record.
            log.error("test %s: cannot save its end in Redis: %s", record.test_id, exc)
        finally:
            record.save_over.set()

    async def _save_end(self, record: TestRecord, lost: bool) -> None:
        ended = (record.state, record.finished_at, record.reason, record.verdict)
        if not lost:
            await self._store.end(*ended)
        else:
            await self._store.rewrite(record.test_id, record.started_at, record.config, ended)

    async def _still_current(self, test_id: str, written: int) -> None:
        current = await self._until_done(
            "reading the current test",
            self._store.current_id,
            give_up_s=self._drain_timeout_s,
            writes=False,
        )
        if current != test_id:
            raise StateLost(lost_state_reason(written))

    async def _reset(self, test_id: str, config: TestConfig) -> None:
        """Make the new test the current one, then clear everything earlier tests left.

        The id changes first, so consumers still finishing an earlier test's messages see them
        as stale instead of counting them into this one.
        """
        redis = self._redis
        layout = redis.layout
        counts = layout.every(names.METRICS_CONSUMERS)
        old_consumers = await redis.pipeline([("SMEMBERS", name) for name in counts])
        counted_by = [
            group.name(names.consumer_count_key(consumer))
            for group, members in zip(layout.groups, old_consumers, strict=True)
            for consumer in members
        ]
        await redis.pipeline(
            [
                *self._store.begin(test_id, config),
                *layout.unlink([*layout.per_test_keys(), *counts, *counted_by]),
            ]
        )
        leftovers = [f"{names.GEN_KEY_PREFIX}*"]
        leftovers += [group.dedup(f"{names.GEN_KEY_PREFIX}*") for group in layout.groups]
        for pattern in leftovers:
            removed = await redis.unlink_matching(pattern)
            if removed:
                log.info("removed %d leftover %s keys", removed, pattern)
        for registry in layout.every(names.EXPIRY_DUE):
            removed = await redis.unregister_matching(registry, f"{names.GEN_KEY_PREFIX}*")
            if removed:
                log.info(
                    "removed %d leftover registrations of %s keys", removed, names.GEN_KEY_PREFIX
                )
        await ensure_library(redis)
        await self._store.generating()

    async def _generate_and_drain(self, record: TestRecord) -> tuple[str, VerdictDocument | None]:
        assert record.config is not None
        written = await self._generate(record.test_id, record.config)
        stopped = self._stop_requested.is_set()
        log.info(
            "test %s: %d keys written%s", record.test_id, written, " (stopped)" if stopped else ""
        )
        await self._still_current(record.test_id, written)
        await self._until_done(
            "recording the end of generation",
            partial(self._store.draining, written),
            give_up_s=self._drain_timeout_s,
        )
        record.state = "draining"
        self._notify()
        return await self._drain(record, written, "stopped" if stopped else "finished")

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
            waited = self._waited_s
            attempts = 0

            async def write_batch(first: int = written, count: int = count) -> str | None:
                nonlocal attempts
                attempts += 1
                return await self._write_batch(
                    test_id, first, count, config.key_ttl, retry=attempts > 1
                )

            try:
                current = await self._until_done(
                    "writing keys",
                    write_batch,
                    give_up_s=self._drain_timeout_s,
                    interrupt=self._stop_requested,
                )
            except _Interrupted:
                written += await self._settle_stopped_batch(test_id, written, count, config.key_ttl)
                break
            # After waiting for Redis, go on at the test's pace rather than in one burst.
            begin += self._waited_s - waited
            if current != test_id:
                raise StateLost(lost_state_reason(written))
            written += count
            telemetry.GENERATED.inc(count)
            await trio.lowlevel.checkpoint()
        return written

    async def _write_batch(
        self, test_id: str, first: int, count: int, ttl_ms: int, retry: bool
    ) -> str | None:
        """``write_batch``, noting the batch's deadline (the drain waits for it)."""
        now_ms = int(time.time() * 1000)
        self._last_deadline_ms = max(self._last_deadline_ms, now_ms + ttl_ms)
        return await write_batch(self._redis, self._store, test_id, first, count, ttl_ms, retry)

    async def _settle_stopped_batch(self, test_id: str, first: int, count: int, ttl_ms: int) -> int:
        """How many keys of a batch the test was stopped on (Redis refusing it) were written.

        None when Redis holds no trace of any; all of them when it holds some, the rest
        written now (a cluster's masters take their parts apart) and the count set, so that
        the generated count, the consumption and the verdict agree.
        """
        keys = [names.gen_key(seq) for seq in range(first, first + count)]
        left = await self._until_done(
            "reading what the stopped batch wrote",
            partial(unwritten, self._redis, keys),
            give_up_s=self._drain_timeout_s,
            writes=False,
        )
        if len(left) == count:
            return 0
        log.info("the test stopped on a batch partly written: writing the rest of it")
        current = await self._until_done(
            "finishing the stopped batch",
            partial(self._write_batch, test_id, first, count, ttl_ms, retry=True),
            give_up_s=self._drain_timeout_s,
        )
        if current != test_id:
            raise StateLost(lost_state_reason(first))
        return count

    async def _drain(
        self, record: TestRecord, expected: int, final_state: str
    ) -> tuple[str, VerdictDocument | None]:
        """Wait until every written key is consumed, or nothing moved for the drain timeout
        after the last key's deadline; then check every key.

        Keys whose TTL has not run out yet are not late: the timeout counts from the later of
        the last progress and the last deadline.
        """
        self._draining = True
        last_progress = time.time()
        last_unique = -1
        read = partial(read_snapshot, self._redis, with_consumers=False)
        while True:
            try:
                snapshot = await self._until_done(
                    "reading the test's progress",
                    read,
                    give_up_s=self._drain_timeout_s,
                    interrupt=self._end_drain,
                    writes=False,
                )
            except _Interrupted:
                record.reason = "stopped while Redis did not answer: no verdict"
                return "stopped", None
            if snapshot.test.get("id") != record.test_id:
                raise StateLost(lost_state_reason(expected))
            if snapshot.unique >= expected:
                break
            now = time.time()
            if snapshot.unique != last_unique:
                last_unique, last_progress = snapshot.unique, now
            quiet_since = max(last_progress, self._last_deadline_ms / 1000)
            if now - quiet_since > self._drain_timeout_s:
                log.warning(
                    "test %s: no progress for %.0f s after the last key's deadline; ending with "
                    "%d keys unconsumed",
                    record.test_id,
                    self._drain_timeout_s,
                    expected - snapshot.unique,
                )
                break
            if self._end_drain.is_set():
                final_state = "stopped" if final_state == "finished" else final_state
                break
            with trio.move_on_after(DRAIN_POLL_S):
                await self._end_drain.wait()
        result = await self._until_done(
            "checking every key",
            partial(key_by_key_verdict, self._redis, expected),
            give_up_s=self._drain_timeout_s,
            writes=False,
        )
        return final_state, result
