"""The claims in Redis: one typed function per claim script, each script's KEYS built here.

Every consumer claims the keys it hears expire (``hear``), the lead those whose registered
deadline came (``hear`` with ``due``, after ``read_upcoming``), the sweepers the overdue ones
(``scan_overdue``, ``claim_overdue``) and the claims whose lease ran out (``take_over``); the
publisher marks the published ones (``mark_queued``) or gives them back (``release``); the
pull workers begin and complete them (``begin``, ``complete``, ``dead_letter``). Each runs
one atomic Lua script per slot group (``shared.scripts``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import names, scripts, telemetry
from shared.bridge import RedisGateway, ScriptCall
from shared.lease import deadline_of, key_of
from shared.names import KeyLayout, SlotGroup

_CLAIM_KEYS = (names.TEST_CURRENT, names.EXPIRY_DUE, names.EXPIRY_LEASES, names.EXPIRY_CLAIM_SEQ)


def claim_keys(group: SlotGroup) -> list[str]:
    """The state every claim of ``group`` reads and writes (the first KEYS of HEAR)."""
    return [group.name(name) for name in _CLAIM_KEYS]


def members_by_group(layout: KeyLayout, members: Sequence[str]) -> dict[SlotGroup, list[str]]:
    """Lease members split by the slot group of their keys (where their leases are)."""
    return layout.split(members, key_of)


@dataclass(frozen=True)
class Claimed:
    """Claims to publish: their lease members, and the generation of this publication."""

    members: list[str]
    #: "" for a claim's first publication; a republication's own tag otherwise.
    generation: str = ""
    #: Registered deadlines the claim saw coming within its lookahead: (key, ms until due).
    upcoming: tuple[tuple[str, int], ...] = ()


#: What a listener heard of one key: (event, key), such as ``("expired", "session:7")``.
KeyEvent = tuple[str, str]


async def hear(
    redis: RedisGateway,
    events: Sequence[KeyEvent],
    lease_ms: int,
    window_ms: int,
    lookahead_ms: int = 0,
) -> Claimed:
    """Apply ``events``, in the order heard, with one atomic script per slot group (``HEAR``):
    deadlines armed, moved or cancelled go into the registry, and each expiry instance is won
    by one caller only. Returns the claims won, and the registered deadlines seen coming
    within ``lookahead_ms``.

    On a cluster what the script needs to know of each key (whether it exists, its deadline) is
    read first, in one round trip: a key and its group's state live in different slots.
    """
    seen = [""] * len(events)
    if redis.layout.cluster:
        reads = [
            ("EXISTS" if event == names.EXPIRED_EVENT else "PEXPIRETIME", key)
            for event, key in events
        ]
        seen = [str(int(reply)) for reply in await redis.pipeline(reads)]
    calls: list[ScriptCall] = []
    for group, part in redis.layout.split(zip(events, seen, strict=True), _key_of_heard).items():
        script_keys = claim_keys(group)
        args: list[str | int] = [lease_ms, window_ms, lookahead_ms]
        for (event, key), read in part:
            if event in names.FIRING_EVENTS:
                script_keys.append(group.dedup(key))
            if not read:
                script_keys.append(key)
            args += [event, key, read]
        calls.append((script_keys, args))
    won: list[str] = []
    upcoming: list[tuple[str, int]] = []
    for group_won, group_upcoming in await redis.scripts(scripts.HEAR, calls):
        won += group_won
        upcoming += pairs(group_upcoming)
    expiries = sum(1 for event, _ in events if event in names.FIRING_EVENTS)
    telemetry.CLAIMS.labels("won").inc(len(won))
    telemetry.CLAIMS.labels("lost").inc(expiries - len(won))
    telemetry.observe_lateness("claimed", map(deadline_of, won))
    return Claimed(won, upcoming=tuple(upcoming))


async def read_upcoming(
    redis: RedisGateway, back_ms: int, ahead_ms: int, limit: int
) -> list[list[tuple[str, int]]]:
    """Per slot group, up to ``limit`` registered deadlines from ``back_ms`` ago to
    ``ahead_ms`` ahead, earliest first: (key, ms until due, by Redis's clock) (``UPCOMING``)."""
    calls: list[ScriptCall] = [
        ([group.name(names.EXPIRY_DUE)], [back_ms, ahead_ms, limit])
        for group in redis.layout.groups
    ]
    return [pairs(reply) for reply in await redis.scripts(scripts.UPCOMING, calls)]


def pairs(flat: Sequence[str | int]) -> list[tuple[str, int]]:
    """(key, ms) pairs of a flat script reply."""
    return [(str(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]


def _key_of_heard(heard: tuple[KeyEvent, str]) -> str:
    return heard[0][1]


async def claim(redis: RedisGateway, keys: Sequence[str], lease_ms: int, window_ms: int) -> Claimed:
    """Try to win the expiries of ``keys``, as if each had been heard expiring."""
    return await hear(redis, [(names.EXPIRED_EVENT, key) for key in keys], lease_ms, window_ms)


async def scan_overdue(
    redis: RedisGateway, grace_ms: int, limit: int
) -> tuple[list[str], list[str]]:
    """Registered keys overdue by more than ``grace_ms``, and leases that ran out (a read).

    ``limit`` applies to each slot group.
    """
    calls: list[ScriptCall] = [
        ([group.name(names.EXPIRY_DUE), group.name(names.EXPIRY_LEASES)], [grace_ms, limit])
        for group in redis.layout.groups
    ]
    due: list[str] = []
    stale: list[str] = []
    for group_due, group_stale in await redis.scripts(scripts.SWEEP_SCAN, calls):
        due += group_due
        stale += group_stale
    return due, stale


async def claim_overdue(
    redis: RedisGateway, keys: Sequence[str], lease_ms: int, grace_ms: int, window_ms: int
) -> Claimed:
    """Claim overdue registered ``keys`` whose expiry nobody claimed (one atomic script per
    slot group). On a cluster the keys' TTLs are read first, in one round trip: a key and
    its group's state live in different slots."""
    layout = redis.layout
    seen: dict[str, str] = {key: "" for key in keys}
    if layout.cluster:
        ttls = await redis.pipeline([("PTTL", key) for key in keys])
        seen = {key: str(ttl) for key, ttl in zip(keys, ttls, strict=True)}
    calls: list[ScriptCall] = []
    for group, part in layout.by_group(keys).items():
        script_keys = claim_keys(group)
        script_keys += [group.name(names.METRICS_RECOVERED), group.name(names.TEST_RECOVERED)]
        args: list[str | int] = [lease_ms, grace_ms, window_ms]
        for key in part:
            script_keys += [group.dedup(key)] if seen[key] else [group.dedup(key), key]
            args += [key, seen[key]]
        calls.append((script_keys, args))
    won = [member for reply in await redis.scripts(scripts.SWEEP_CLAIM, calls) for member in reply]
    telemetry.RECOVERED.inc(len(won))
    telemetry.observe_lateness("claimed", map(deadline_of, won))
    return Claimed(won)


async def take_over(redis: RedisGateway, members: Sequence[str], lease_ms: int) -> Claimed:
    """Take over the leases among ``members`` that ran out, to republish their claims."""
    state = (names.EXPIRY_LEASES, names.METRICS_RECOVERED, names.TEST_CURRENT, names.TEST_RECOVERED)
    calls: list[ScriptCall] = [
        ([group.name(name) for name in state], [lease_ms, *part])
        for group, part in members_by_group(redis.layout, members).items()
    ]
    replies = await redis.scripts(scripts.RENEW_STALE, calls)
    taken = [member for reply in replies for member in reply[1:]]
    telemetry.RECOVERED.inc(len(taken))
    # Any of the groups' clocks tells this publication from the earlier ones.
    return Claimed(taken, generation=str(max(int(reply[0]) for reply in replies)))


async def _per_group(
    redis: RedisGateway, source: str, members: Sequence[str], *first: str | int
) -> None:
    """Run a script on ``expiry:leases`` with ``first`` then ``members``, per slot group."""
    calls: list[ScriptCall] = [
        ([group.name(names.EXPIRY_LEASES)], [*first, *part])
        for group, part in members_by_group(redis.layout, members).items()
    ]
    await redis.scripts(source, calls)


async def release(redis: RedisGateway, members: Sequence[str]) -> None:
    """End the leases of ``members`` now (``RELEASE``): any sweeper takes them over."""
    await _per_group(redis, scripts.RELEASE, members)


async def mark_queued(redis: RedisGateway, members: Sequence[str], lease_ms: int) -> None:
    """Lengthen the leases of claims whose messages JetStream stored (``MARK_QUEUED``)."""
    await _per_group(redis, scripts.MARK_QUEUED, members, lease_ms)


async def release_all(redis: RedisGateway) -> int:
    """Make every claim in flight due for republishing (``RELEASE_ALL``); how many."""
    calls: list[ScriptCall] = [
        ([group.name(names.EXPIRY_LEASES)], []) for group in redis.layout.groups
    ]
    return int(sum(await redis.scripts(scripts.RELEASE_ALL, calls)))


_BEGIN_KEYS = (names.TEST_CURRENT, names.EXPIRY_LEASES, names.METRICS_DUPLICATES)


async def begin(
    redis: RedisGateway, lease_ms: int, leases: dict[SlotGroup, list[str]]
) -> list[list[int]]:
    """Per group, per lease of a delivery: 1 handle it (its lease renewed for ``lease_ms``),
    0 handled already, 2 an earlier test's (``BEGIN``)."""
    calls: list[ScriptCall] = [
        ([group.name(name) for name in _BEGIN_KEYS], [lease_ms, *part])
        for group, part in leases.items()
    ]
    replies: list[list[int]] = await redis.scripts(scripts.BEGIN, calls)
    return replies


async def complete(
    redis: RedisGateway, consumer_id: str, leases: dict[SlotGroup, list[str]]
) -> list[list[int]]:
    """End the claims of ``leases`` and count each once, for ``consumer_id`` (the idempotent
    ``COMPLETE``); per group: [counted, duplicates, stale]."""
    state = (
        names.TEST_CURRENT,
        names.EXPIRY_LEASES,
        names.METRICS_CONSUMED,
        names.consumer_count_key(consumer_id),
        names.METRICS_CONSUMERS,
        names.METRICS_DUPLICATES,
        names.TEST_CONSUMED,
        names.TEST_LATENCY,
        names.TEST_COUNTED,
    )
    calls: list[ScriptCall] = [
        ([group.name(name) for name in state], [consumer_id, *part])
        for group, part in leases.items()
    ]
    replies: list[list[int]] = await redis.scripts(scripts.COMPLETE, calls)
    return replies


_DEAD_LETTER_KEYS = (
    names.TEST_CURRENT,
    names.EXPIRY_LEASES,
    names.EXPIRY_DEAD_LETTERS,
    names.METRICS_DEAD_LETTERS,
    names.TEST_DEAD_LETTERS,
)


async def dead_letter(redis: RedisGateway, per_group: dict[SlotGroup, list[str | int]]) -> int:
    """Record dead letters (``DEAD_LETTER``: per group, how many to keep, then lease, key,
    test id and JSON record of each); how many were recorded."""
    calls: list[ScriptCall] = [
        ([group.name(name) for name in _DEAD_LETTER_KEYS], args)
        for group, args in per_group.items()
    ]
    return int(sum(await redis.scripts(scripts.DEAD_LETTER, calls)))
