"""The asyncio loop inside trio, and the decorator that crosses into it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import ParamSpec, TypeVar

import trio_asyncio

P = ParamSpec("P")
T = TypeVar("T")


@asynccontextmanager
async def open_bridge() -> AsyncIterator[None]:
    """Run an asyncio event loop for the duration of the block (inside the current trio run)."""
    async with trio_asyncio.open_loop():
        yield


def crossing(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Wrap an asyncio coroutine function so trio code can await it inside ``open_bridge()``.

    Cancelling the trio caller cancels the asyncio task.
    """
    wrapped: Callable[P, Awaitable[T]] = trio_asyncio.aio_as_trio(fn)
    return wrapped
