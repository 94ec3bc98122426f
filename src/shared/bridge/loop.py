"""The asyncio loop inside trio, and the decorator that crosses into it."""

from __future__ import annotations

import asyncio
import heapq
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import trio
import trio_asyncio
from sniffio import thread_local as sniffio_library
from trio_asyncio._base import BaseTrioEventLoop
from trio_asyncio._handles import AsyncHandle

from shared.libraries import LibraryMismatch, mismatch, require

P = ParamSpec("P")
T = TypeVar("T")

#: Ready asyncio callbacks run one after the other before trio gets a turn (see below).
CALLBACKS_PER_TURN = 64
#: trio-asyncio versions whose loop internals ``_run_ready_callbacks`` was written against.
KNOWN_VERSIONS = (["0", "15"], ["0", "16"])


@asynccontextmanager
async def open_bridge() -> AsyncIterator[None]:
    """Run an asyncio event loop for the duration of the block (inside the current trio run);
    ``LibraryMismatch`` when the installed trio-asyncio is not the one this code relies on."""
    require(PROBLEM)
    async with trio_asyncio.open_loop():
        yield


def crossing(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Wrap an asyncio coroutine function so trio code can await it inside ``open_bridge()``.

    Cancelling the trio caller cancels the asyncio task.
    """
    wrapped: Callable[P, Awaitable[T]] = trio_asyncio.aio_as_trio(fn)
    return wrapped


_run_one_callback: Any = getattr(BaseTrioEventLoop, "_main_loop_one", None)


async def _run_ready_callbacks(self: Any, no_wait: bool = False) -> None:
    """trio-asyncio's loop step, then every callback already ready, up to a limit.

    trio-asyncio runs one asyncio callback per trio scheduling round, each behind a new cancel
    scope: a Redis command through redis-py takes about eight such rounds, and so a bridge
    crossing cost 250 to 370 µs of CPU where asyncio itself spends under 100 (measured, a PING).
    Like asyncio's own loop, this runs what is ready in one round (at most
    ``CALLBACKS_PER_TURN``, so trio tasks still get their turn); the order stays the same.
    """
    await _run_one_callback(self, no_wait)
    if no_wait:
        return
    for _ in range(CALLBACKS_PER_TURN):
        if self._timers and self._timers[0]._when <= self.time():
            handle = heapq.heappop(self._timers)
        else:
            try:
                handle = self._q_recv.receive_nowait()
            except trio.WouldBlock:
                return
            if isinstance(handle, asyncio.TimerHandle):
                heapq.heappush(self._timers, handle)
                continue
        if isinstance(handle, AsyncHandle):
            handle._context.run(self._nursery.start_soon, handle._run, name=handle._callback)
            await handle._started.wait()
        elif not handle._cancelled:
            previous, sniffio_library.name = sniffio_library.name, "asyncio"
            try:
                handle._run()
            finally:
                sniffio_library.name = previous


def check() -> list[str]:
    """What differs, in the installed trio-asyncio, from the internals used above."""
    problems: list[str] = []
    version = trio_asyncio.__version__.split(".")[:2]
    if version not in KNOWN_VERSIONS:
        known = ", ".join(".".join(v) for v in KNOWN_VERSIONS)
        problems.append(f"not one of the versions its loop step was written against ({known})")
    if not inspect.iscoroutinefunction(getattr(BaseTrioEventLoop, "_main_loop_one", None)):
        problems.append("BaseTrioEventLoop has no async _main_loop_one()")
    try:
        loop_setup = inspect.getsource(BaseTrioEventLoop.__init__)
        handle_setup = inspect.getsource(AsyncHandle)
    except (OSError, TypeError) as exc:
        return [*problems, f"its source cannot be read: {exc}"]
    for needed in ("self._q_recv", "self._timers"):
        if needed not in loop_setup:
            problems.append(f"BaseTrioEventLoop no longer sets {needed}")
    for needed in ("self._started", "async def _run"):
        if needed not in handle_setup:
            problems.append(f"AsyncHandle no longer has {needed.split()[-1]}")
    return problems


def _patch_loop() -> LibraryMismatch | None:
    """Install ``_run_ready_callbacks`` where trio-asyncio has the internals it relies on;
    what differs otherwise."""
    if BaseTrioEventLoop._main_loop_one is _run_ready_callbacks:
        return None
    problem = mismatch("trio-asyncio", check())
    if problem is None:
        BaseTrioEventLoop._main_loop_one = _run_ready_callbacks
    return problem


#: What differs in the installed trio-asyncio (its loop step then unpatched); None when
#: nothing does and asyncio callbacks run in batches.
PROBLEM = _patch_loop()
BATCHED_CALLBACKS = PROBLEM is None
