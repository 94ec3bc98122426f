"""The pull worker's keep-alive, against a real redis-server."""

from collections.abc import Sequence

import pytest
import trio

from consumer import batch
from consumer.batch import KeepAlive
from consumer.claim_store import claim
from consumer.delivery import Delivery
from consumer.worker_context import WorkerContext
from dev.local_system import RedisServer
from shared import names
from shared.lease import Lease
from shared.nats import JetStreamMessage
from tests.helpers import bridged_redis


class InProgress:
    """Counts what the worker tells JetStream it is still working on."""

    def __init__(self) -> None:
        self.told = 0

    async def in_progress(self, messages: Sequence[JetStreamMessage]) -> None:
        self.told += 1


async def eventually(check: object, limit_s: float = 5) -> None:
    with trio.fail_after(limit_s):
        while not check():  # type: ignore[operator]  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_batch_in_hand_is_kept_alive_until_released(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "KEEPALIVE_S", 0.05)
    jetstream = InProgress()
    async with bridged_redis(redis_server.url) as redis, trio.open_nursery() as nursery:
        won = await claim(redis, ["k:1"], 1000, 5000)
        member = won.members[0]
        lease = Lease.parse(member)
        assert lease is not None
        message = JetStreamMessage(key=lease.key, lease=member, delivered=1, handle=None)
        deliveries = [Delivery(message, lease.claim_id, lease.deadline, lease.test_id)]
        first_lease = float(await redis.call("ZSCORE", names.EXPIRY_LEASES, member))
        ctx = WorkerContext(redis, jetstream, "c-1", None, None, 60_000, 30)  # type: ignore[arg-type]
        keeper = KeepAlive(ctx)
        await nursery.start(keeper.run)
        assert jetstream.told == 0

        keeper.hold(deliveries)
        await eventually(lambda: jetstream.told >= 2)
        lease = float(await redis.call("ZSCORE", names.EXPIRY_LEASES, member))
        assert lease > first_lease + 30_000  # held for the worker's lease from now on

        keeper.release()
        await trio.sleep(0.1)  # a keep-alive under way when released ends
        told = jetstream.told
        await trio.sleep(0.2)
        assert jetstream.told == told

        keeper.hold(deliveries)  # the next batch
        await eventually(lambda: jetstream.told > told)
        nursery.cancel_scope.cancel()
