"""The Lua scripts' contract, against a real Redis."""

import time

import trio

from consumer.batch import complete
from consumer.claim_store import (
    claim,
    claim_overdue,
    hear,
    read_upcoming,
    scan_overdue,
    take_over,
)
from consumer.delivery import Delivery
from consumer.worker_context import WorkerContext
from dev.local_system import RedisServer
from shared import latency, names, scripts
from shared.bridge import RedisGateway
from shared.lease import Lease
from shared.nats import JetStreamMessage
from shared.registration import Registry, ensure_library
from tests.helpers import add_due, bridged_redis, eventually, expired, start_test_record


def lease_of(member: str) -> Lease:
    lease = Lease.parse(member)
    assert lease is not None, member
    return lease


def keys_of(members: list[str]) -> list[str]:
    return sorted(lease_of(m).key for m in members)


async def test_exactly_one_claim_wins_each_key_registered_or_not(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        deadline = await add_due(redis, ["session:1"])
        results: list[list[str]] = []

        async def one_claim() -> None:
            won = await claim(redis, ["session:1", "session:2", "order:3"], 30_000, 4000)
            results.append(won.members)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(one_claim)
        won = [member for members in results for member in members]
        assert keys_of(won) == ["order:3", "session:1", "session:2"]
        leases = {lease_of(m) for m in won}
        assert len({lease.claim_id for lease in leases}) == 3  # one id per claim
        by_key = {lease.key: lease for lease in leases}
        assert by_key["session:1"].deadline == str(deadline)  # registered: the deadline travels
        assert by_key["session:2"].deadline == ""  # written with plain SET: no deadline known
        assert by_key["order:3"].test_id == ""  # no test runs
        assert 3000 < await redis.call("PTTL", "dedup:session:2") <= 4000
        assert await redis.call("ZCARD", names.EXPIRY_DUE) == 0
        assert sorted(await redis.call("ZRANGE", names.EXPIRY_LEASES, 0, -1)) == sorted(won)


async def test_the_running_test_brings_its_window_and_its_id_to_its_own_keys(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis, dedup_window=70_000)
        await add_due(redis, ["gen-key:1", "session:1"])
        won = await claim(redis, ["gen-key:1", "session:1", "gen-key:x"], 30_000, 4000)
        leases = {lease.key: lease for lease in map(lease_of, won.members)}
        assert leases["gen-key:1"].test_id == "t-test"
        assert leases["session:1"].test_id == ""  # not the test's prefix
        assert leases["gen-key:x"].test_id == ""  # not registered: someone else's plain SET
        assert 69_000 < await redis.call("PTTL", "dedup:gen-key:1") <= 70_000
        # A registered instance's record outlives a shorter window; a key claimed by name
        # has the consumer's window.
        least = scripts.LEAST_CLAIM_RECORD_MS
        assert least - 1000 < await redis.call("PTTL", "dedup:session:1") <= least
        assert await redis.call("PTTL", "dedup:gen-key:x") <= 4000
        # While a new test is starting, the last test's leftovers belong to no test.
        await redis.call("HSET", names.TEST_CURRENT, "state", "starting")
        await add_due(redis, ["gen-key:2"])
        won = await claim(redis, ["gen-key:2"], 30_000, 4000)
        assert lease_of(won.members[0]).test_id == "-"


async def test_a_late_event_within_the_window_wins_nothing_after_it_wins_again(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        assert len((await claim(redis, ["k:1"], 30_000, 100)).members) == 1
        assert (await claim(redis, ["k:1"], 30_000, 100)).members == []
        await trio.sleep(0.15)  # the dedup record is gone: the key expired again
        assert len((await claim(redis, ["k:1"], 30_000, 100)).members) == 1


async def test_a_registered_expiry_heard_again_long_after_the_window_wins_nothing(
    redis_server: RedisServer,
) -> None:
    """The other listener's copy of the event, far behind in a burst, finds it claimed."""
    async with bridged_redis(redis_server.url) as redis:
        await add_due(redis, ["k:1"])
        assert len((await claim(redis, ["k:1"], 30_000, 100)).members) == 1
        await trio.sleep(0.15)  # past the window
        assert (await claim(redis, ["k:1"], 30_000, 100)).members == []
        # Armed again (heard), it is a new timer whatever record the last one left.
        await add_due(redis, ["k:1"])
        assert len((await claim(redis, ["k:1"], 30_000, 100)).members) == 1


async def test_sweep_claims_overdue_registered_keys_once_and_leaves_live_ones_alone(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        old = int(time.time() * 1000) - 10_000
        await add_due(redis, [f"gen-key:{i}" for i in range(100)], deadline_ms=old)
        await redis.call("SET", "gen-key:5", "alive", "PX", 60_000)  # its TTL was extended
        await redis.call("SET", "gen-key:6", "kept")  # no TTL any more: it will never expire
        results: list[list[str]] = []

        async def one_sweep() -> None:
            due, _ = await scan_overdue(redis, 1000, 1000)
            results.append((await claim_overdue(redis, due, 30_000, 1000, 5000)).members)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one_sweep)
        claimed = [key for members in results for key in keys_of(members)]
        assert len(claimed) == len(set(claimed)) == 98
        assert "gen-key:5" not in claimed and "gen-key:6" not in claimed
        assert await redis.call("ZRANGE", names.EXPIRY_DUE, 0, -1) == ["gen-key:5"]
        assert int(float(await redis.call("ZSCORE", names.EXPIRY_DUE, "gen-key:5"))) > old
        assert await redis.call("GET", names.METRICS_RECOVERED) == "98"
        # A late expiry event of a swept key must still find it claimed.
        assert await redis.call("PTTL", "dedup:gen-key:7") > 50_000
        # Nothing else is due, and no lease has run out.
        assert await scan_overdue(redis, 1000, 1000) == ([], [])


async def test_a_lease_that_ran_out_is_taken_over_once(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        won = await claim(redis, ["k:1", "k:2"], lease_ms=50, window_ms=5000)
        await trio.sleep(0.1)
        _, stale = await scan_overdue(redis, 1000, 10)
        assert sorted(stale) == sorted(won.members)
        first, second = await take_over(redis, stale, 30_000), await take_over(redis, stale, 30_000)
        assert sorted(first.members) == sorted(won.members) and first.generation.isdigit()
        assert second.members == []
        # Giving claims back makes them due at once.
        await redis.script(scripts.RELEASE, (names.EXPIRY_LEASES,), won.members[:1])
        assert (await scan_overdue(redis, 1000, 10))[1] == won.members[:1]


async def test_registering_writes_the_key_and_its_deadline_together(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await ensure_library(redis)
        registry = Registry(redis)
        before = int(time.time() * 1000)
        deadline = await registry.register("session:9", "user-1", ttl_ms=60_000)
        assert before + 59_000 < deadline < before + 61_000
        assert await redis.call("GET", "session:9") == "user-1"
        assert 59_000 < await redis.call("PTTL", "session:9") <= 60_000
        assert int(float(await redis.call("ZSCORE", names.EXPIRY_DUE, "session:9"))) == deadline


async def test_completing_records_each_test_key_once_with_its_delay_and_bucket(
    redis_server: RedisServer,
) -> None:
    class NoAcks:
        async def ack(self, messages: object) -> None:
            return None

    async with bridged_redis(redis_server.url) as redis:
        await start_test_record(redis)
        now = int(time.time() * 1000)
        delays = [0, 3, 17, 250, 4000]
        for i, delay in enumerate(delays):
            await add_due(redis, [f"gen-key:{i}"], deadline_ms=now - delay)
        won = await claim(redis, [f"gen-key:{i}" for i in range(len(delays))], 30_000, 5000)
        deliveries = []
        for member in won.members:
            lease = lease_of(member)
            message = JetStreamMessage(key=lease.key, lease=member, delivered=1, handle=None)
            deliveries.append(Delivery(message, lease.claim_id, lease.deadline, lease.test_id))
        ctx = WorkerContext(redis, NoAcks(), "c-1", None, None, 30_000, 30)  # type: ignore[arg-type]
        first = await complete(ctx, deliveries, [])
        again = await complete(ctx, deliveries[:2], [])
        assert (first.counted, first.duplicates) == (5, 0)
        assert (again.counted, again.duplicates) == (0, 2)
        records = await redis.call("HGETALL", names.TEST_CONSUMED)
        assert set(records) == {f"gen-key:{i}" for i in range(len(delays))}
        recorded = {k: int(v.split()[1]) for k, v in records.items()}
        buckets = await redis.call("HGETALL", names.TEST_LATENCY)
        expected: dict[int, int] = {}
        for delay in recorded.values():
            expected[latency.bucket_of(delay)] = expected.get(latency.bucket_of(delay), 0) + 1
        assert {int(b): int(n) for b, n in buckets.items()} == expected
        for i, delay in enumerate(delays):
            assert delay <= recorded[f"gen-key:{i}"] < delay + 5000
        assert await redis.call("GET", names.TEST_COUNTED) == "5"


async def test_claim_ids_never_repeat_after_redis_lost_its_data(redis_server: RedisServer) -> None:
    """Message ids are claim ids: JetStream would drop a reused one as a duplicate."""
    async with bridged_redis(redis_server.url) as redis:
        before = await claim(redis, ["k:1", "k:2"], 30_000, 5000)
        await redis.call("FLUSHALL")
        await trio.sleep(0.002)  # a Redis that lost its data took longer than a ms to restart
        after = await claim(redis, ["k:1", "k:2"], 30_000, 5000)
        old = {int(m.split("|")[0]) for m in before.members}
        new = {int(m.split("|")[0]) for m in after.members}
        assert min(new) > max(old) and len(new) == 2
        assert all(str(i).isdigit() for i in new)  # never written in exponent notation


async def test_deadline_events_register_move_and_cancel_keys(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await redis.pipeline(
            [
                ("SET", "t:armed", "v", "PX", 60_000),
                ("SET", "t:persisted", "v"),
                ("SET", "t:replaced", "v", "PX", 60_000),
            ]
        )
        await add_due(redis, ["t:persisted", "t:deleted", "t:replaced"], deadline_ms=1)
        events = [
            ("expire", "t:armed"),
            ("persist", "t:persisted"),
            ("del", "t:deleted"),
            ("expire", "t:gone-already"),  # expired before it was heard: nothing to register
            ("del", "t:replaced"),  # deleted, then written again before this was heard
        ]
        assert (await hear(redis, events, 30_000, 5000)).members == []
        reply = await redis.call("ZRANGE", names.EXPIRY_DUE, 0, -1, "WITHSCORES")
        due = {member: int(score) for member, score in reply}
        armed_at = await redis.call("PEXPIRETIME", "t:armed")
        # A key written again keeps the deadline it has now: the registry follows the key.
        replaced_at = await redis.call("PEXPIRETIME", "t:replaced")
        assert due == {"t:armed": armed_at, "t:replaced": replaced_at}
        # Moving it: the registry follows.
        await redis.call("PEXPIRE", "t:armed", 120_000)
        await hear(redis, [("expire", "t:armed")], 30_000, 5000)
        moved = await redis.call("PEXPIRETIME", "t:armed")
        assert int(float(await redis.call("ZSCORE", names.EXPIRY_DUE, "t:armed"))) == moved


async def test_each_instance_of_a_key_is_claimed_once_whoever_hears_it(
    redis_server: RedisServer,
) -> None:
    """Listeners hearing the same events, in any interleaving: one claim per (key, deadline)."""
    async with bridged_redis(redis_server.url) as redis:
        keys = [f"t:{i}" for i in range(50)]
        won: list[str] = []
        for round_ in range(3):  # armed, fired, armed again, inside one dedup window
            await redis.pipeline([("SET", key, round_, "PX", 30) for key in keys])
            arming = [("expire", key) for key in keys]
            await hear(redis, arming, 30_000, 60_000)
            await eventually(lambda: _none_exist(redis, keys))
            firing = [expired(key) for key in keys]
            async with trio.open_nursery() as nursery:
                for events in (arming + firing, firing, firing + arming):
                    nursery.start_soon(_hear_into, redis, events, won)
        assert sorted(keys_of(won)) == sorted(keys * 3)
        assert len({(lease.key, lease.deadline) for lease in map(lease_of, won)}) == 150


async def test_a_live_unregistered_key_or_one_not_due_is_not_claimed(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await redis.call("SET", "t:alive", "v", "PX", 60_000)
        later = int(time.time() * 1000) + 60_000
        await add_due(redis, ["t:deleted-early"], deadline_ms=later)
        won = await claim(redis, ["t:alive", "t:deleted-early"], 30_000, 5000)
        assert won.members == []
        assert await redis.call("EXISTS", "dedup:t:alive", "dedup:t:deleted-early") == 0
        # Fired, then written again before its expiry was claimed: the fired one is handled.
        fired = await add_due(redis, ["t:rearmed"], deadline_ms=int(time.time() * 1000) - 5)
        await redis.call("SET", "t:rearmed", "again", "PX", 60_000)
        won = await claim(redis, ["t:rearmed"], 30_000, 5000)
        assert [lease_of(m).deadline for m in won.members] == [str(fired)]


def due(key: str) -> tuple[str, str]:
    """The lead's word that ``key``'s registered deadline came."""
    return (names.DUE_EVENT, key)


async def test_a_due_key_is_claimed_once_and_its_expired_event_then_wins_nothing(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await redis.call("SET", "t:due", "v", "PX", 20)
        fired_at = await add_due(redis, ["t:due"], await redis.call("PEXPIRETIME", "t:due"))
        await trio.sleep(0.03)
        won = await hear(redis, [due("t:due"), due("t:due")], 30_000, 5000)
        assert [lease_of(m).deadline for m in won.members] == [str(fired_at)]
        # Claimed as its expiry would have claimed it: gone from the registry, a record kept.
        assert await redis.call("ZSCORE", names.EXPIRY_DUE, "t:due") is None
        assert await redis.call("PTTL", "dedup:t:due") > 59_000
        assert (await hear(redis, [expired("t:due")], 30_000, 5000)).members == []
        assert (await claim_overdue(redis, ["t:due"], 30_000, 0, 5000)).members == []


async def test_due_claims_no_key_that_lives_on_or_that_nobody_registered(
    redis_server: RedisServer,
) -> None:
    """A deadline the registry holds but the key no longer has (moved or persisted unheard)
    is not claimed: the registry follows the key. ``due`` never claims an unregistered key."""
    async with bridged_redis(redis_server.url) as redis:
        now = int(time.time() * 1000)
        await redis.pipeline(
            [
                ("SET", "t:moved", "v", "PX", 60_000),
                ("SET", "t:persisted", "v"),
                ("SET", "t:ahead", "v", "PX", 60_000),
            ]
        )
        await add_due(redis, ["t:moved", "t:persisted"], now - 5)
        ahead = await add_due(redis, ["t:ahead"], await redis.call("PEXPIRETIME", "t:ahead"))
        events = [due(key) for key in ("t:moved", "t:persisted", "t:ahead", "t:unregistered")]
        won = await hear(redis, events, 30_000, 5000, lookahead_ms=120_000)
        assert won.members == []
        moved = await redis.call("PEXPIRETIME", "t:moved")
        assert int(float(await redis.call("ZSCORE", names.EXPIRY_DUE, "t:moved"))) == moved
        assert await redis.call("ZSCORE", names.EXPIRY_DUE, "t:persisted") is None
        assert await redis.call("EXISTS", "dedup:t:unregistered") == 0
        # Both deadlines still ahead are reported, in ms by Redis's clock.
        upcoming = dict(won.upcoming)
        assert set(upcoming) == {"t:moved", "t:ahead"}
        assert 0 < upcoming["t:ahead"] <= ahead - now
        assert 0 < upcoming["t:moved"] <= moved - now


async def test_due_and_expired_events_from_many_callers_claim_each_instance_once(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        keys = [f"t:{i}" for i in range(50)]
        await ensure_library(redis)
        registry = Registry(redis)
        for key in keys:
            await registry.register(key, "v", 20)
        await eventually(lambda: _none_exist(redis, keys))
        firing = [expired(key) for key in keys] + [due(key) for key in keys]
        won: list[str] = []
        async with trio.open_nursery() as nursery:
            for events in (firing, firing[::-1], [due(key) for key in keys]):
                nursery.start_soon(_hear_into, redis, events, won)
        assert sorted(keys_of(won)) == sorted(keys)
        assert all(lease_of(m).deadline for m in won)


async def test_deadlines_armed_within_the_lookahead_are_reported_and_the_registry_read(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await redis.pipeline(
            [("SET", "t:soon", "v", "PX", 80), ("SET", "t:later", "v", "PX", 60_000)]
        )
        heard = await hear(redis, [("expire", "t:soon"), ("expire", "t:later")], 30_000, 5000, 100)
        assert [key for key, _ in heard.upcoming] == ["t:soon"]
        assert 0 < heard.upcoming[0][1] <= 80
        (page,) = await read_upcoming(redis, 1000, 100, 10)
        assert [key for key, _ in page] == ["t:soon"] and 0 < page[0][1] <= 80
        (page,) = await read_upcoming(redis, 1000, 120_000, 1)
        assert [key for key, _ in page] == ["t:soon"]  # earliest first, up to the limit


async def test_cancel_and_reschedule_from_trio(redis_server: RedisServer) -> None:
    async with bridged_redis(redis_server.url) as redis:
        await ensure_library(redis)
        registry = Registry(redis)
        await registry.register("t:1", "v", 60_000)
        moved = await registry.reschedule("t:1", 120_000)
        assert moved == await redis.call("PEXPIRETIME", "t:1")
        assert int(float(await redis.call("ZSCORE", names.EXPIRY_DUE, "t:1"))) == moved
        assert await registry.cancel("t:1") is True
        assert await redis.call("EXISTS", "t:1") == 0
        assert await redis.call("ZSCORE", names.EXPIRY_DUE, "t:1") is None
        assert await registry.cancel("t:1") is False
        assert await registry.reschedule("t:1", 1000) is None


async def _hear_into(redis: RedisGateway, events: list[tuple[str, str]], won: list[str]) -> None:
    won += (await hear(redis, events, 30_000, 60_000)).members


async def _none_exist(redis: RedisGateway, keys: list[str]) -> bool:
    return int(await redis.call("EXISTS", *keys)) == 0
