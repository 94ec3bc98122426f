"""Logging set-up: one line per event, plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str, service: str) -> None:
    """Send logs to stderr at ``level`` in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries log per request or per message at INFO; keep them to warnings.
    for noisy in ("hypercorn.access", "nats", "asyncio", "quart.serving"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Throttle:
    """Lets a repeated message through at most once per ``interval`` seconds per kind.

    During an outage every batch fails the same way; one line every few seconds says as much
    as a thousand.
    """

    def __init__(self, interval: float = 5.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}

    def allow(self, kind: str) -> bool:
        """Whether a message of ``kind`` may be logged now."""
        now = time.monotonic()
        if now - self._last.get(kind, -self._interval) >= self._interval:
            self._last[kind] = now
            return True
        return False
