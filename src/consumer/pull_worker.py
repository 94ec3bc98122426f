"""Task: take keys from the JetStream work queue, count each exactly once, then acknowledge."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from consumer.readiness import Readiness
from shared import latency, names, scripts, telemetry
from shared.backoff import Backoff
from shared.bridge import JetStream, JetStreamMessage, RedisGateway
from shared.bridge.jetstream import Feed
from shared.logs import Throttle

log = logging.getLogger(__name__)

FETCH_WAIT_S = 0.5
RETRY_DELAY_S = 1.0


@dataclass(frozen=True)
class Counted:
    """What one batch's counting did."""

    counted: int
    duplicates: int
    stale: int


def is_well_formed(message: JetStreamMessage) -> bool:
    """Whether ``message`` names a gen-key and carries its test id and a numeric deadline."""
    return (
        names.parse_gen_key(message.key.encode()) is not None
        and bool(message.test_id)
        and message.deadline.isdigit()
    )


def count_arguments(
    consumer_id: str, test_id: str, messages: Sequence[JetStreamMessage], now_ms: int
) -> list[str | int]:
    """ARGV of the COUNT script for ``messages`` of one test."""
    args: list[str | int] = [test_id, consumer_id]
    for message in messages:
        delay_ms = max(0, now_ms - int(message.deadline))
        args += [message.key, message.deadline, delay_ms, latency.bucket_of(delay_ms)]
    return args


async def count_batch(
    redis: RedisGateway, consumer_id: str, messages: Sequence[JetStreamMessage]
) -> Counted:
    """Count well-formed ``messages`` (grouped by test) with the idempotent COUNT script."""
    by_test: dict[str, list[JetStreamMessage]] = defaultdict(list)
    for message in messages:
        by_test[message.test_id].append(message)
    now_ms = int(time.time() * 1000)
    counted = duplicates = stale = 0
    keys = (
        names.TEST_CURRENT,
        names.TEST_CONSUMED,
        names.TEST_INFLIGHT,
        names.TEST_LATENCY,
        names.METRICS_CONSUMED,
        names.consumer_count_key(consumer_id),
        names.METRICS_CONSUMERS,
        names.METRICS_DUPLICATES,
    )
    for test_id, group in by_test.items():
        args = count_arguments(consumer_id, test_id, group, now_ms)
        done, dup = await redis.script(scripts.COUNT, keys, args)
        if done < 0:
            stale += len(group)
            continue
        counted += done
        duplicates += dup
        for message in group:
            telemetry.CONSUMPTION_DELAY.observe(max(0, now_ms - int(message.deadline)) / 1000)
    return Counted(counted, duplicates, stale)


async def record_dead_letters(redis: RedisGateway, messages: Sequence[JetStreamMessage]) -> None:
    """Record messages given up on, so they are counted and visible rather than lost silently."""
    keys = (
        names.TEST_CURRENT,
        names.TEST_DEAD_LETTERS,
        names.METRICS_DEAD_LETTERS,
        names.TEST_INFLIGHT,
    )
    for message in messages:
        log.error(
            "giving up on message %r of test %r after %d deliveries",
            message.key[:200],
            message.test_id[:100],
            message.delivered,
        )
        await redis.script(
            scripts.DEAD_LETTER, keys, [message.test_id, message.key[:200], message.deadline[:20]]
        )
    telemetry.DEAD_LETTERS.inc(len(messages))


async def handle_batch(
    redis: RedisGateway, jetstream: JetStream, consumer_id: str, messages: list[JetStreamMessage]
) -> None:
    """Count, then settle every message of one fetch: ack, nak for a retry, or term."""
    telemetry.BATCH_SIZE.labels("consume").observe(len(messages))
    telemetry.REDELIVERIES.inc(sum(1 for m in messages if m.delivered > 1))
    good = [m for m in messages if is_well_formed(m)]
    poison = [m for m in messages if not is_well_formed(m)]
    if poison:
        await record_dead_letters(redis, poison)
        await jetstream.term(poison)
    if not good:
        return
    try:
        with telemetry.STAGE_SECONDS.labels("count").time():
            result = await count_batch(redis, consumer_id, good)
    except Exception:
        telemetry.ERRORS.labels("pull_worker").inc()
        last_chance = [m for m in good if m.delivered >= names.MAX_DELIVER]
        retry = [m for m in good if m.delivered < names.MAX_DELIVER]
        if retry:
            await jetstream.nak(retry, delay=RETRY_DELAY_S)
        if last_chance:
            # Not acked: the key stays in flight in Redis and the sweeper republishes it later.
            with trio.move_on_after(1):
                await record_dead_letters(redis, last_chance)
            await jetstream.term(last_chance)
        raise
    telemetry.CONSUMED.inc(result.counted)
    telemetry.DUPLICATES.inc(result.duplicates)
    telemetry.STALE.inc(result.stale)
    await jetstream.ack(good)


async def run_pull_worker(
    redis: RedisGateway,
    jetstream: JetStream,
    consumer_id: str,
    readiness: Readiness,
    stop: trio.Event,
    batch: int,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fetch, count and acknowledge until ``stop`` is set; the batch in hand is finished first.

    ``started`` fires once bound to the durable consumer. A failed fetch (NATS restarted, the
    stream or consumer gone) re-creates the topology and binds again, with back-off.
    """
    throttle = Throttle()
    backoff = Backoff(initial=0.1, cap=3.0)
    started = False
    feed: Feed | None = None
    try:
        while not stop.is_set():
            try:
                if feed is None:
                    feed = await jetstream.open_feed()
                messages = await feed.fetch(batch, FETCH_WAIT_S)
            except Exception as exc:
                readiness.bound = False
                telemetry.ERRORS.labels("pull_worker").inc()
                if throttle.allow("fetch"):
                    log.warning("fetching from JetStream failed (%s); binding again", exc)
                await _drop(feed)
                feed = None
                await backoff.wait()
                await _ensure_topology(jetstream, throttle)
                continue
            readiness.bound = True
            backoff.reset()
            if not started:
                started = True
                task_status.started()
            if not messages:
                continue
            try:
                await handle_batch(redis, jetstream, consumer_id, messages)
            except Exception as exc:
                if throttle.allow("count"):
                    log.warning("counting %d keys failed (%s); redelivering", len(messages), exc)
                await backoff.wait()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await _drop(feed)


async def _drop(feed: Feed | None) -> None:
    if feed is not None:
        try:
            await feed.close()
        except Exception as exc:
            log.debug("closing a pull feed: %s", exc)


async def _ensure_topology(jetstream: JetStream, throttle: Throttle) -> None:
    try:
        await jetstream.ensure_topology()
    except Exception as exc:
        if throttle.allow("topology"):
            log.warning("cannot re-create the JetStream stream/consumer yet: %s", exc)
