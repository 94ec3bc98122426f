"""``python -m consumer``: run one consumer until SIGTERM or SIGINT."""

from __future__ import annotations

from functools import partial

import trio

from consumer.app import run_consumer
from consumer.handler import load_handler
from shared.config import load_consumer
from shared.logs import setup_logging
from shared.service import load_or_exit, run_or_exit


async def main() -> None:
    """Run the consumer; the first SIGTERM/SIGINT drains it, a second one stops it at once."""
    config = load_or_exit(load_consumer, "consumer")
    handler = load_or_exit(lambda: load_handler(config.handler), "consumer")
    setup_logging(config.common.log_level, config.common.log_format, "consumer")
    await run_or_exit(partial(run_consumer, config, handler=handler), "consumer")


def run() -> None:
    """The ``expiry-pipeline-consumer`` console script."""
    trio.run(main)


if __name__ == "__main__":
    run()
