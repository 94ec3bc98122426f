"""``--help`` and ``--version`` of the services, answered before anything connects.

The services take their settings from the environment only: any other argument is a usage
error, reported in one line with exit status 2, like a bad setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

#: The distribution whose version ``--version`` prints.
DISTRIBUTION = "expiry-pipeline"

#: The environment variables each service reads, as named in shared/config.py.
COMMON_VARIABLES = (
    "REDIS_URL",
    "NATS_URL",
    "NATS_CREDS",
    "NATS_CA_FILE",
    "LOG_LEVEL",
    "LOG_FORMAT",
)
GENERATOR_VARIABLES = (
    *COMMON_VARIABLES,
    "HOST",
    "PORT",
    "API_TOKEN",
    "ALLOWED_ORIGINS",
    "WEB_DIST",
    "DRAIN_TIMEOUT_S",
)
CONSUMER_VARIABLES = (
    *COMMON_VARIABLES,
    "CONSUMER_ID",
    "FLEET",
    "KEY_PATTERNS",
    "HANDLER",
    "HANDLER_CONCURRENCY",
    "HANDLER_TIMEOUT_MS",
    "HEALTH_HOST",
    "HEALTH_PORT",
    "BATCH_SIZE",
    "CLAIM_LEASE_MS",
    "DEDUP_WINDOW_MS",
    "SWEEP_INTERVAL_MS",
    "SWEEP_GRACE_MS",
    "SHUTDOWN_GRACE_S",
    "EXPIRY_LISTENERS",
    "LISTENER_LEASE_MS",
    "EXPIRY_NUDGE_MS",
    "TIMER_LOOKAHEAD_MS",
    "PULL_OVERFLOW_PENDING",
    "STREAM_REPLICAS",
    "STREAM_STORAGE",
)


def version() -> str:
    """``expiry-pipeline <version>``, as installed."""
    try:
        return f"{DISTRIBUTION} {metadata.version(DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        return f"{DISTRIBUTION} (version unknown: not installed)"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the service, not the usage text and a traceback."""

    service = ""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.service}: {message} (see --help)\n")


def handle_arguments(
    service: str, about: str, variables: Sequence[str], argv: Sequence[str] | None = None
) -> None:
    """Answer ``--help`` or ``--version`` and exit 0, or exit 2 on any other argument;
    return only when there are no arguments (``argv``: ``sys.argv[1:]`` by default)."""
    command = os.path.basename(sys.argv[0])
    parser = _Parser(
        # How it was started: `python -m generator` or the expiry-pipeline-generator script.
        prog=f"python -m {service}" if command == "__main__.py" else command,
        description=textwrap.fill(about, width=79),
        epilog="environment variables (the README's Configuration section describes each):\n"
        + textwrap.fill(" ".join(variables), width=79, initial_indent="  ", subsequent_indent="  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.service = service
    parser.add_argument("--version", action="version", version=version())
    parser.parse_args(argv)
