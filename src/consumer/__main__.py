"""``python -m consumer``: run one consumer until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys

import trio

from consumer.app import run_consumer
from consumer.readiness import Readiness
from shared.config import ConfigError, load_consumer
from shared.logs import setup_logging


async def main() -> None:
    """Run the consumer; the first SIGTERM/SIGINT drains it, a second one stops it at once."""
    try:
        config = load_consumer()
    except ConfigError as exc:
        print(f"consumer: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(config.common.log_level, config.common.log_format, "consumer")
    stop = trio.Event()
    running = False
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for _ in signals:
                    if not running or stop.is_set():
                        # Nothing in hand yet (still connecting), or asked twice: stop now.
                        nursery.cancel_scope.cancel()
                    stop.set()

            async def consume(*, task_status: trio.TaskStatus[Readiness]) -> None:
                await run_consumer(config, stop, task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            await nursery.start(consume)
            running = True


if __name__ == "__main__":
    trio.run(main)
