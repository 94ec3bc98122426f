"""What both entrypoints share: configuration errors as one line, and stopping on signals."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import trio

from shared.config import ConfigError

C = TypeVar("C")


class Service(Protocol):
    """A service's run function: runs until ``stop`` is set; ``started`` once working."""

    async def __call__(self, stop: trio.Event, *, task_status: trio.TaskStatus[Any]) -> None: ...


def load_or_exit(load: Callable[[], C], service: str) -> C:
    """The service's configuration, or exit status 2 with one line naming what is wrong."""
    try:
        return load()
    except ConfigError as exc:
        print(f"{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def run_until_signalled(service: Service) -> None:
    """Run ``service`` until SIGTERM or SIGINT.

    The first signal sets its ``stop`` event so it can finish the work in hand; a second one,
    or a first one while it is still starting (nothing in hand yet), cancels it at once.
    """
    stop = trio.Event()
    started = False
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for _ in signals:
                    if not started or stop.is_set():
                        nursery.cancel_scope.cancel()
                    stop.set()

            async def run(*, task_status: trio.TaskStatus[Any]) -> None:
                await service(stop, task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            await nursery.start(run)
            started = True
