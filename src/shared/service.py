"""What both entrypoints share: configuration errors as one line, and stopping on signals."""

from __future__ import annotations

import errno
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import trio

from shared.bridge import loop as bridge_loop
from shared.config import ConfigError
from shared.libraries import LibraryMismatch, require
from shared.nats import _internals as nats_internals
from shared.redis import _internals as redis_internals

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


def listen_error(host_variable: str, port_variable: str, host: str, port: int, exc: OSError) -> str:
    """One line saying why the service cannot listen on ``host:port``, naming the variables."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{port_variable}={port}: the port is already in use on {host}; stop what listens "
            f"there or choose another {port_variable}"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"{host_variable}={host!r} is not an address of this machine: use one of its "
            "addresses, 0.0.0.0 (every interface) or 127.0.0.1"
        )
    if exc.errno == errno.EACCES:
        return f"{port_variable}={port}: no permission to listen on it; choose a port above 1023"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {host_variable}={host!r} {port_variable}={port}: {reason}"


E = TypeVar("E", bound=BaseException)


def find_exception(exc: BaseException, kind: type[E]) -> E | None:
    """The first ``kind`` in ``exc`` or in the exception groups nested in it."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_exception(inner, kind)
            if found is not None:
                return found
    return None


async def run_or_exit(service: Service, name: str) -> None:
    """``run_until_signalled``; a configuration error found while starting (a port in use)
    ends the process with one line naming the variable and exit status 2, an installed library
    whose internals differ (``LibraryMismatch``) with one line naming it and status 1, before
    anything is started."""
    try:
        require(bridge_loop.PROBLEM, nats_internals.PROBLEM, redis_internals.PROBLEM)
        await run_until_signalled(service)
    except BaseException as exc:
        library = find_exception(exc, LibraryMismatch)
        if library is not None:
            print(f"{name}: cannot start: {library}", file=sys.stderr)
            raise SystemExit(1) from None
        config_error = find_exception(exc, ConfigError)
        if config_error is None:
            raise
        print(f"{name}: configuration error: {config_error}", file=sys.stderr)
    else:
        return
    raise SystemExit(2)
