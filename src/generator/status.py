"""Reading the state of the current test from Redis, and the verdict at its end."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, cast

from generator.documents import (
    DeadLetterDocument,
    LatencyDocument,
    StatusDocument,
    TestConfigDocument,
    VerdictDocument,
)
from shared import latency, names
from shared.bridge import RedisGateway
from shared.bridge.redis_io import Command

RUNNING_STATES = ("starting", "generating", "draining")
#: How many of the latest dead letters the status carries.
RECENT_DEAD_LETTERS = 5


@dataclass
class Snapshot:
    """Everything Redis says about the current test at one moment."""

    test: dict[str, str]
    generated: int
    consumed: int
    unique: int
    pending: int
    inflight: int
    duplicates: int
    dead_letters: int
    recovered: int
    consumers: dict[str, int] = field(default_factory=dict)
    latency_buckets: dict[int, int] = field(default_factory=dict)
    recent_dead_letters: list[DeadLetterDocument] = field(default_factory=list)
    #: Consumers holding a listener slot (the default fleet's), by lease end (unix ms).
    listeners: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """The test's state, ``idle`` when there has been none."""
        return self.test.get("state", "idle")

    @property
    def num_keys(self) -> int:
        """The number of keys the test was asked for (0 when idle)."""
        return int(self.test.get("num_keys", 0))


def _int(value: Any) -> int:
    return int(value) if value else 0


#: Per slot group, in this order: what ``read_snapshot`` reads and adds up over the groups.
_PER_GROUP = (
    ("GET", names.TEST_COUNTED),
    ("HLEN", names.TEST_CONSUMED),
    ("ZCARD", names.EXPIRY_DUE),
    ("ZCARD", names.EXPIRY_LEASES),
    ("GET", names.METRICS_DUPLICATES),
    ("GET", names.METRICS_DEAD_LETTERS),
    ("SCARD", names.TEST_RECOVERED),
)
#: Per slot group, after the sums: consumers, latency buckets, latest dead letters.
_PER_GROUP_SETS = 3


async def read_snapshot(redis: RedisGateway, with_consumers: bool = True) -> Snapshot:
    """One consistent-enough look at the test (two round trips at most).

    On a Redis Cluster each slot group keeps its own records of the test: they are added up.
    """
    groups = redis.layout.groups
    commands: list[Command] = [
        ("HGETALL", names.TEST_CURRENT),
        ("GET", names.METRICS_GENERATED),
        ("HGETALL", names.listeners_held("")),
    ]
    for group in groups:
        commands += [(command, group.name(key)) for command, key in _PER_GROUP]
        commands += [
            ("SMEMBERS", group.name(names.METRICS_CONSUMERS)),
            ("HGETALL", group.name(names.TEST_LATENCY)),
            ("LRANGE", group.name(names.EXPIRY_DEAD_LETTERS), 0, RECENT_DEAD_LETTERS - 1),
        ]
    replies = await redis.pipeline(commands)
    test, generated, listeners = replies[:3]
    stride = len(_PER_GROUP) + _PER_GROUP_SETS
    per_group = [replies[3 + i * stride : 3 + (i + 1) * stride] for i in range(len(groups))]
    sums = [sum(_int(part[i]) for part in per_group) for i in range(len(_PER_GROUP))]
    consumed, unique, pending, inflight, dups, dead, recovered = sums
    latency_buckets: dict[int, int] = {}
    dead_letters: list[DeadLetterDocument] = []
    members: set[str] = set()
    for part in per_group:
        group_members, buckets, letters = part[len(_PER_GROUP) :]
        members.update(group_members or [])
        for bucket, count in (buckets or {}).items():
            latency_buckets[int(bucket)] = latency_buckets.get(int(bucket), 0) + int(count)
        dead_letters += parse_dead_letters(letters or [])
    dead_letters.sort(key=lambda record: -float(record.get("at") or 0))
    consumers: dict[str, int] = {}
    if with_consumers and members:
        ordered = sorted(members)
        counts = await redis.pipeline(
            [
                ("GET", group.name(names.consumer_count_key(member)))
                for member in ordered
                for group in groups
            ]
        )
        consumers = {
            member: sum(_int(c) for c in counts[i * len(groups) : (i + 1) * len(groups)])
            for i, member in enumerate(ordered)
        }
    return Snapshot(
        test=test or {},
        generated=_int(generated),
        consumed=consumed,
        unique=unique,
        pending=pending,
        inflight=inflight,
        duplicates=dups,
        dead_letters=dead,
        recovered=recovered,
        consumers=consumers,
        latency_buckets=latency_buckets,
        recent_dead_letters=dead_letters[:RECENT_DEAD_LETTERS],
        listeners={k: int(v) for k, v in (listeners or {}).items() if str(v).isdigit()},
    )


def parse_dead_letters(raw: list[str]) -> list[DeadLetterDocument]:
    """Dead-letter records as stored by the consumers (newest first, each written as a
    ``DeadLetterDocument`` by ``consumer.batch``); unreadable ones skipped."""
    records = []
    for item in raw:
        try:
            record = json.loads(item)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(cast(DeadLetterDocument, record))
    return records


def verdict(snapshot: Snapshot) -> VerdictDocument:
    """Whether every generated key was consumed exactly once; what is missing or doubled.

    ``consumed`` counts every key counted (a key counted twice would count twice), ``unique``
    the distinct keys with a consumption record: their difference is the number of doubles.
    """
    missing = max(0, snapshot.generated - snapshot.unique)
    doubled = max(0, snapshot.consumed - snapshot.unique)
    return {
        "exactly_once": missing == 0 and doubled == 0,
        "expected": snapshot.generated,
        "consumed": snapshot.unique,
        "missing": missing,
        "duplicates": doubled,
        "dead_letters": snapshot.dead_letters,
    }


#: Keys per HMGET when checking every key.
CHECK_CHUNK = 5000


async def key_by_key_verdict(redis: RedisGateway, expected: int) -> VerdictDocument:
    """The verdict on keys ``0..expected-1``, each looked up in ``test:consumed``.

    ``expected`` is what the generator wrote (not a counter, which can lag or be lost);
    ``missing`` counts those keys without a consumption record, one by one. ``duplicates``
    are counts beyond one per key (``metrics:consumed`` minus the records).
    """
    missing = 0
    layout = redis.layout
    for first in range(0, expected, CHECK_CHUNK):
        fields = [names.gen_key(n) for n in range(first, min(expected, first + CHECK_CHUNK))]
        parts = layout.by_group(fields).items()
        replies = await redis.pipeline(
            [("HMGET", group.name(names.TEST_CONSUMED), *part) for group, part in parts]
        )
        missing += sum(record is None for records in replies for record in records)
    snapshot = await read_snapshot(redis, with_consumers=False)
    doubled = max(0, snapshot.consumed - snapshot.unique)
    return {
        "exactly_once": missing == 0 and doubled == 0,
        "expected": expected,
        "consumed": expected - missing,
        "missing": missing,
        "duplicates": doubled,
        "dead_letters": snapshot.dead_letters,
    }


def _average_rates(
    snapshot: Snapshot, started_at: float, finished_at: float
) -> tuple[float, float]:
    """Keys per second over the whole test: generation until its end, consumption until done."""
    generation_end = float(snapshot.test.get("generation_ended_at") or finished_at)
    generating = generation_end - started_at
    consuming = finished_at - started_at
    return (
        snapshot.generated / generating if generating > 0 else 0.0,
        snapshot.unique / consuming if consuming > 0 else 0.0,
    )


def status_document(
    snapshot: Snapshot, rates: tuple[float, float], now: float, auth_required: bool = False
) -> StatusDocument:
    """The ``/api/status`` body, as Redis describes the test (the feed adds what this process
    knows: ``redis_problem``, ``rate_sample``, and the runner's corrections)."""
    test = snapshot.test
    state = snapshot.state
    started_at = float(test["started_at"]) if test.get("started_at") else None
    finished_at = float(test["finished_at"]) if test.get("finished_at") else None
    elapsed = 0.0
    if started_at is not None:
        elapsed = max(0.0, (finished_at or now) - started_at)
    num_keys = snapshot.num_keys
    progress = min(100.0, 100.0 * snapshot.unique / num_keys) if num_keys else 0.0
    config = None
    if test.get("num_keys"):
        config = TestConfigDocument(
            num_keys=int(test["num_keys"]),
            key_delay=int(test["key_delay"]),
            key_ttl=int(test["key_ttl"]),
            dedup_window=int(test["dedup_window"]),
        )
    stored_verdict: VerdictDocument | None = None
    if test.get("verdict"):
        stored_verdict = cast(VerdictDocument, json.loads(test["verdict"]))
    if state not in RUNNING_STATES and started_at is not None and finished_at is not None:
        rates = _average_rates(snapshot, started_at, finished_at)
    latency_ms = None
    if (percentiles := latency.percentiles(snapshot.latency_buckets)) is not None:
        latency_ms = LatencyDocument(
            p50=percentiles["p50"],
            p95=percentiles["p95"],
            p99=percentiles["p99"],
            count=sum(snapshot.latency_buckets.values()),
        )
    return {
        "is_running": state in RUNNING_STATES,
        "state": state,
        "test_id": test.get("id"),
        "config": config,
        "generated": snapshot.generated,
        "consumed": snapshot.consumed,
        "in_flight": max(0, snapshot.generated - snapshot.unique),
        "progress": round(progress, 2),
        "generation_rate": round(rates[0], 1),
        "consumption_rate": round(rates[1], 1),
        "elapsed_s": round(elapsed, 2),
        "started_at": started_at,
        "finished_at": finished_at,
        "consumers": snapshot.consumers,
        "listeners": sorted(c for c, until in snapshot.listeners.items() if until > now * 1000),
        "latency_ms": latency_ms,
        "pending": snapshot.pending,
        "claimed_in_flight": snapshot.inflight,
        "recovered": snapshot.recovered,
        "redelivered": snapshot.duplicates,
        "dead_letters": snapshot.dead_letters,
        "recent_dead_letters": snapshot.recent_dead_letters,
        "verdict": stored_verdict,
        "reason": test.get("reason"),
        "auth_required": auth_required,
        "redis_problem": None,
        "rate_sample": None,
    }
