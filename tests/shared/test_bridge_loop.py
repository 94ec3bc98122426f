"""The asyncio loop inside trio: callbacks run in batches, in order, and trio keeps running."""

import asyncio

import trio
import trio.lowlevel

from shared.bridge import open_bridge
from shared.bridge.loop import BATCHED_CALLBACKS, crossing


def test_the_installed_trio_asyncio_runs_callbacks_in_batches() -> None:
    assert BATCHED_CALLBACKS


async def test_callbacks_run_in_order_while_trio_tasks_keep_running() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async def many_callbacks() -> list[int]:
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        done = loop.create_future()
        for i in range(1000):
            loop.call_soon(seen.append, i)
        loop.call_later(0.01, done.set_result, None)
        await done
        return seen

    async with open_bridge(), trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        assert await crossing(many_callbacks)() == list(range(1000))
        assert ticks > 1  # trio got turns while a thousand callbacks ran
        nursery.cancel_scope.cancel()
