"""The listener quorum against a real Redis: how many listen, handing slots over."""

import signal

import trio

from consumer.listener_quorum import Slot, run_listener_quorum
from consumer.readiness import Readiness
from dev.local_system import RedisServer
from shared import names
from shared.bridge import RedisGateway
from tests.helpers import bridged_redis, eventually

LEASE_MS = 600


class Fleet:
    """Quorum tasks of several in-process 'consumers' sharing one Redis."""

    def __init__(self, redis: RedisGateway, nursery: trio.Nursery, slots: int) -> None:
        self.redis = redis
        self.nursery = nursery
        self.slots = slots
        self.listening: set[str] = set()
        self.slots_of: dict[str, Slot] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    async def add(self, name: str) -> None:
        async def listen(slot: Slot) -> None:
            self.listening.add(name)
            self.slots_of[name] = slot
            try:
                await trio.sleep_forever()
            finally:
                self.listening.discard(name)

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            with trio.CancelScope() as scope:
                self.scopes[name] = scope
                await run_listener_quorum(
                    self.redis, "", self.slots, name, LEASE_MS, listen, Readiness(),
                    task_status=task_status,
                )  # fmt: skip

        await self.nursery.start(run)


async def test_only_as_many_as_there_are_slots_listen_and_a_stopping_one_hands_over(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        fleet = Fleet(redis, nursery, slots=2)
        for name in ("c-0", "c-1", "c-2", "c-3"):
            await fleet.add(name)

        async def two_listen() -> bool:
            await trio.sleep(LEASE_MS / 1000)  # several renewals: never more than two
            return len(fleet.listening) == 2

        await eventually(two_listen)
        held = await redis.call("HGETALL", names.listeners_held(""))
        assert set(held) == fleet.listening
        leaving = sorted(fleet.listening)[0]
        fleet.scopes[leaving].cancel()  # a stop gives the slot back at once

        async def taken_over() -> bool:
            return len(fleet.listening) == 2 and leaving not in fleet.listening

        await eventually(taken_over)
        assert leaving not in await redis.call("HGETALL", names.listeners_held(""))
        nursery.cancel_scope.cancel()


async def test_a_slot_whose_holder_vanished_is_taken_after_its_lease(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        # A holder that died without giving its slot back.
        await redis.call("SET", names.listener_slot("", 0), "dead", "PX", LEASE_MS)
        fleet = Fleet(redis, nursery, slots=1)
        await fleet.add("c-0")
        assert fleet.listening == set()

        async def listens() -> bool:
            return fleet.listening == {"c-0"}

        await eventually(listens, limit_s=LEASE_MS / 1000 * 3)
        nursery.cancel_scope.cancel()


async def test_zero_slots_or_more_slots_than_consumers_means_everyone_listens(
    redis_server: RedisServer,
) -> None:
    async with bridged_redis(redis_server.url) as redis:
        for slots in (0, 10):
            async with trio.open_nursery() as nursery:
                fleet = Fleet(redis, nursery, slots=slots)
                for name in ("c-0", "c-1", "c-2"):
                    await fleet.add(name)

                async def all_listen(fleet: Fleet = fleet) -> bool:
                    return len(fleet.listening) == 3

                await eventually(all_listen)
                nursery.cancel_scope.cancel()


async def test_a_listener_that_took_another_slot_after_an_outage_knows_which(
    redis_server: RedisServer,
) -> None:
    """Redis forgot the slots (their leases ran out during an outage) while both went on
    listening; whoever asks first takes slot 0. Each must then know its new slot: the one in
    slot 0 leads (works a trickle), and a fleet where nobody thinks so strands it."""
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        fleet = Fleet(redis, nursery, slots=2)
        await fleet.add("c-0")
        await fleet.add("c-1")

        async def both_listen() -> bool:
            return len(fleet.listening) == 2

        await eventually(both_listen)
        lead = next(name for name, slot in fleet.slots_of.items() if slot.index == 0)
        other = next(name for name in fleet.slots_of if name != lead)
        # The outage, as Redis sees it afterwards: the other holds slot 0, the lead nothing.
        await redis.call("DEL", names.listener_slot("", 0), names.listener_slot("", 1))
        await redis.call("SET", names.listener_slot("", 0), other, "PX", LEASE_MS)

        async def swapped() -> bool:
            return fleet.slots_of[other].index == 0 and fleet.slots_of[lead].index == 1

        await eventually(swapped)
        assert fleet.listening == {lead, other}
        nursery.cancel_scope.cancel()


async def test_a_listener_goes_on_listening_while_redis_does_not_answer_however_long(
    redis_server: RedisServer,
) -> None:
    """A Redis that hangs (a failover in progress) for many leases: no answer is not "taken"."""
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        fleet = Fleet(redis, nursery, slots=1)
        await fleet.add("c-0")
        await eventually(lambda: _true(bool(fleet.listening)))
        slot = fleet.slots_of["c-0"]
        redis_server.process.signal(signal.SIGSTOP)
        try:
            for _ in range(int(5 * LEASE_MS / 50)):  # five leases
                await trio.sleep(0.05)
                assert slot.held() and fleet.listening == {"c-0"}
        finally:
            redis_server.process.signal(signal.SIGCONT)
        await trio.sleep(2 * LEASE_MS / 1000)
        assert slot.held() and fleet.listening == {"c-0"}
        nursery.cancel_scope.cancel()


async def _true(value: bool) -> bool:
    return value
