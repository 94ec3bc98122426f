"""Claim keys in Redis and publish the ones won to JetStream (shared by publisher and sweeper)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio

from shared import names, scripts, telemetry
from shared.bridge import JetStream, RedisGateway

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 3
_CLAIM_KEYS = (names.TEST_CURRENT, names.TEST_PENDING, names.TEST_INFLIGHT)
_SWEEP_KEYS = (*_CLAIM_KEYS, names.METRICS_RECOVERED)


def parse_claimed(reply: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
    """Split a CLAIM or SWEEP reply into the test id and its (key, deadline) pairs."""
    if not reply:
        return "", []
    test_id, flat = reply[0], reply[1:]
    return test_id, list(zip(flat[0::2], flat[1::2], strict=True))


async def claim(
    redis: RedisGateway, keys: Sequence[str], lease_ms: int
) -> tuple[str, list[tuple[str, str]]]:
    """Try to win ``keys`` (one atomic script); return the test id and the keys won."""
    reply = await redis.script(scripts.CLAIM, _CLAIM_KEYS, [lease_ms, *keys])
    test_id, won = parse_claimed(reply)
    telemetry.CLAIMS.labels("won").inc(len(won))
    telemetry.CLAIMS.labels("lost").inc(len(keys) - len(won))
    return test_id, won


async def sweep(
    redis: RedisGateway, lease_ms: int, grace_ms: int, limit: int
) -> tuple[str, list[tuple[str, str]]]:
    """Claim overdue keys nobody claimed and keys whose lease ran out (one atomic script)."""
    reply = await redis.script(scripts.SWEEP, _SWEEP_KEYS, [lease_ms, grace_ms, limit])
    test_id, claimed = parse_claimed(reply)
    telemetry.RECOVERED.inc(len(claimed))
    return test_id, claimed


def message_headers(test_id: str, key: str, deadline: str) -> dict[str, str]:
    """Headers of the message carrying ``key``: its dedup id, test and TTL deadline."""
    return {
        "Nats-Msg-Id": names.msg_id(test_id, key),
        names.TEST_HEADER: test_id,
        names.DEADLINE_HEADER: deadline,
    }


async def publish_claimed(
    redis: RedisGateway, jetstream: JetStream, test_id: str, claimed: Sequence[tuple[str, str]]
) -> int:
    """Publish claimed keys; return how many JetStream stored.

    A failed publish is retried (re-creating the stream if it vanished); keys that still fail
    get their lease ended so that any consumer's sweeper claims and publishes them: a won key
    is never dropped.
    """
    remaining = list(claimed)
    for attempt in range(PUBLISH_ATTEMPTS):
        if attempt:
            await trio.sleep(0.2 * attempt)
        if not jetstream.is_connected:
            continue  # publishing now would only wait for the reconnect
        items = [(key, message_headers(test_id, key, deadline)) for key, deadline in remaining]
        try:
            results = await jetstream.publish_batch(items)
        except Exception as exc:
            log.warning("publishing %d keys failed: %s", len(items), exc)
            results = [False] * len(items)
        remaining = [pair for pair, ok in zip(remaining, results, strict=True) if not ok]
        telemetry.PUBLISHED.labels("ok").inc(len(items) - len(remaining))
        if not remaining:
            return len(claimed)
        telemetry.PUBLISHED.labels("failed").inc(len(remaining))
        try:  # the stream may have vanished (a NATS restart with memory storage)
            await jetstream.ensure_topology()
        except Exception as exc:
            log.warning("cannot check the JetStream stream: %s", exc)
    members = [f"{key}|{deadline}" for key, deadline in remaining]
    log.warning("giving %d unpublished keys back to the sweepers", len(members))
    try:
        await redis.script(scripts.RELEASE, (names.TEST_INFLIGHT,), members)
    except Exception as exc:
        # Their leases still run out by themselves; the sweepers take them then.
        log.warning(
            "cannot release %d keys early (%s); their leases will expire", len(members), exc
        )
    return len(claimed) - len(remaining)
