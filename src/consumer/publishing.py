"""Claim keys in Redis and publish the claims won to JetStream (publisher and sweeper)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from shared import names, scripts, telemetry
from shared.bridge import RedisGateway, ScriptCall
from shared.lease import Lease, key_of
from shared.logs import Throttle
from shared.names import KeyLayout, SlotGroup
from shared.nats import JetStream

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 3
#: JetStream's refusals (a full store refuses every batch alike): each reason once per 5 s.
_REFUSALS = Throttle()
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


#: What a listener heard of one key: (event, key), such as ``("expired", "session:7")``.
KeyEvent = tuple[str, str]


async def hear(
    redis: RedisGateway, events: Sequence[KeyEvent], lease_ms: int, window_ms: int
) -> Claimed:
    """Apply ``events``, in the order heard, with one atomic script per slot group (``HEAR``):
    deadlines armed, moved or cancelled go into the registry, and each expiry instance is won
    by one caller only. Returns the claims won.

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
        args: list[str | int] = [lease_ms, window_ms]
        for (event, key), read in part:
            if event == names.EXPIRED_EVENT:
                script_keys.append(group.dedup(key))
            if not read:
                script_keys.append(key)
            args += [event, key, read]
        calls.append((script_keys, args))
    won = [member for reply in await redis.scripts(scripts.HEAR, calls) for member in reply]
    expiries = sum(1 for event, _ in events if event == names.EXPIRED_EVENT)
    telemetry.CLAIMS.labels("won").inc(len(won))
    telemetry.CLAIMS.labels("lost").inc(expiries - len(won))
    return Claimed(won)


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


def message_of(
    member: str, generation: str, layout: KeyLayout = names.SINGLE_SERVER
) -> tuple[str, dict[str, str]]:
    """The body (the key) and headers (message id, claim) of the message carrying a claim."""
    lease = Lease.parse(member)
    if lease is None:
        raise ValueError(f"malformed lease {member[:200]!r}")
    return lease.key, {
        "Nats-Msg-Id": names.msg_id(lease.claim_id, generation, layout.group_of(lease.key)),
        names.CLAIM_HEADER: lease.header,
    }


#: How long a claim whose message JetStream stored may stay unhandled before a sweeper
#: republishes it (covers a message lost without NATS saying so; not a backlog).
QUEUED_LEASE_MS = 300_000


class QueuedMarks:
    """Claims JetStream stored, marked as queued (``MARK_QUEUED``) a little later, together.

    Marking only lengthens the lease of a claim whose message waits in a backlog; most claims
    are completed within milliseconds, and marking a completed one does nothing. So one call
    every ``every_s`` (well inside the claim lease) replaces a Redis round trip, and the
    wake-up for its reply, per published batch. A mark that comes too late costs at most a
    second publication of the claim, which is only acknowledged.
    """

    #: Marked at once beyond this many, to keep each script call short.
    MAX_PENDING = 2000

    def __init__(self, redis: RedisGateway, every_s: float) -> None:
        self._redis = redis
        self.every_s = every_s
        self._pending: list[str] = []

    async def add(self, members: list[str]) -> None:
        """Mark ``members`` soon (now, when many are waiting)."""
        self._pending += members
        if len(self._pending) >= self.MAX_PENDING:
            await self.flush()

    async def flush(self) -> None:
        """Mark every member waiting now."""
        members, self._pending = self._pending, []
        await _mark_queued(self._redis, members)

    async def run(self) -> None:
        """Flush every ``every_s`` until cancelled."""
        while True:
            await trio.sleep(self.every_s)
            if self._pending:
                await self.flush()


async def publish_claimed(
    redis: RedisGateway, jetstream: JetStream, claimed: Claimed, marks: QueuedMarks | None = None
) -> int:
    """Publish claims; return how many JetStream stored.

    A failed publish is retried (re-creating the stream if it vanished); claims that still fail
    get their lease ended so that any consumer's sweeper takes them over and publishes them:
    a won key is never dropped. Stored claims are marked as queued by ``marks``, or at once.
    """
    remaining = list(claimed.members)
    for attempt in range(PUBLISH_ATTEMPTS):
        if attempt:
            await trio.sleep(0.2 * attempt)
        if not jetstream.is_connected:
            continue  # publishing now would only wait for the reconnect
        items = [message_of(member, claimed.generation, redis.layout) for member in remaining]
        try:
            refusals = await jetstream.publish_batch(items)
        except Exception as exc:
            refusals = [f"publishing failed: {exc}"] * len(items)
        stored = [member for member, why in zip(remaining, refusals, strict=True) if why is None]
        remaining = [member for member, why in zip(remaining, refusals, strict=True) if why]
        reasons = "; ".join(sorted({why for why in refusals if why}))
        if reasons and _REFUSALS.allow(reasons):
            log.warning(
                "JetStream did not take %d of %d keys: %s", len(remaining), len(items), reasons
            )
        telemetry.PUBLISHED.labels("ok").inc(len(stored))
        if marks is None:
            await _mark_queued(redis, stored)
        else:
            await marks.add(stored)
        if not remaining:
            return len(claimed.members)
        telemetry.PUBLISHED.labels("failed").inc(len(remaining))
        try:  # the stream may have vanished (a NATS restart with memory storage)
            await jetstream.ensure_topology()
        except Exception as exc:
            log.warning("cannot check the JetStream stream: %s", exc)
    await give_back(redis, remaining)
    return len(claimed.members) - len(remaining)


async def give_back(redis: RedisGateway, members: list[str]) -> None:
    """End the leases of claims this process will not publish: any sweeper takes them now."""
    log.warning("giving %d unpublished keys back to the sweepers", len(members))
    try:
        await _per_group(redis, scripts.RELEASE, members)
    except Exception as exc:
        # Their leases still run out by themselves; the sweepers take them then.
        log.warning(
            "cannot release %d keys early (%s); their leases will expire", len(members), exc
        )


async def _mark_queued(redis: RedisGateway, members: list[str]) -> None:
    if not members:
        return
    try:
        await _per_group(redis, scripts.MARK_QUEUED, members, QUEUED_LEASE_MS)
    except Exception as exc:  # the short lease stands: at worst a harmless second publication
        log.warning("cannot mark %d published keys as queued: %s", len(members), exc)


async def _per_group(
    redis: RedisGateway, source: str, members: Sequence[str], *first: str | int
) -> None:
    """Run a script on ``expiry:leases`` with ``first`` then ``members``, per slot group."""
    calls: list[ScriptCall] = [
        ([group.name(names.EXPIRY_LEASES)], [*first, *part])
        for group, part in members_by_group(redis.layout, members).items()
    ]
    await redis.scripts(source, calls)
