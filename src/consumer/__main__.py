"""``python -m consumer``: run one consumer until SIGTERM or SIGINT."""

from __future__ import annotations

from functools import partial

import trio

from consumer.app import run_consumer
from consumer.handler import load_handler
from shared.config import load_consumer
from shared.logs import setup_logging
from shared.service import load_or_exit, run_or_exit
from shared.usage import CONSUMER_VARIABLES, handle_arguments

ABOUT = (
    "One consumer of the expiry pipeline: hears Redis announce expired keys, queues them on "
    "NATS JetStream, claims each exactly once in Redis and runs HANDLER on it, until SIGTERM "
    "or SIGINT (the first one drains). It reads its settings from the environment only."
)


async def main() -> None:
    """Run the consumer; the first SIGTERM/SIGINT drains it, a second one stops it at once."""
    config = load_or_exit(load_consumer, "consumer")
    handler = load_or_exit(lambda: load_handler(config.handler), "consumer")
    setup_logging(config.common.log_level, config.common.log_format, "consumer")
    await run_or_exit(partial(run_consumer, config, handler=handler), "consumer")


def run() -> None:
    """The ``expiry-pipeline-consumer`` console script; ``--help`` and ``--version`` answer
    without connecting to anything."""
    handle_arguments("consumer", ABOUT, CONSUMER_VARIABLES)
    trio.run(main)


if __name__ == "__main__":
    run()
