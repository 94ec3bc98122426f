"""Connecting to NATS: the options, the connection's events, and what a refusal means."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

import nats

from shared.config import redact, split_servers
from shared.logs import Throttle

log = logging.getLogger(__name__)


@dataclass
class ConnectionEvents:
    """Counts of connection events reported by nats-py (read by trio tasks)."""

    reconnects: int = 0
    closing: bool = False


async def connect(
    url: str, creds: str | None, name: str, events: ConnectionEvents, ca_file: str | None
) -> Any:
    async def disconnected() -> None:
        if not events.closing:
            log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        events.reconnects += 1
        log.info("NATS reconnected")

    throttle = Throttle(10)

    async def error(exc: Exception) -> None:
        if throttle.allow(type(exc).__name__):
            log.warning("NATS at %s: %s; retrying", redact(url), _explain(exc, creds, ca_file))

    options: dict[str, Any] = {
        "servers": split_servers(url),
        "name": name,
        "connect_timeout": 2,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        "error_cb": error,
    }
    if creds:
        options["user_credentials"] = creds
    if ca_file:
        options["tls"] = ssl.create_default_context(cafile=ca_file)
    try:
        return await nats.connect(**options)
    except Exception as exc:
        raise ConnectionError(
            f"cannot connect to NATS at {redact(url)}: {_explain(exc, creds, ca_file)}"
        ) from None


def _explain(exc: Exception, creds: str | None, ca_file: str | None) -> str:
    """What went wrong connecting, and what to check."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        trusted = f"NATS_CA_FILE={ca_file}" if ca_file else "the system's CAs (no NATS_CA_FILE)"
        return (
            f"the server's TLS certificate is not trusted ({exc.args[-1] if exc.args else text}):"
            f" set NATS_CA_FILE to the CA that signed it (trusted now: {trusted})"
        )
    if "authorization" in text.lower() or "authentication" in text.lower():
        if creds:
            return (
                f"the server refused the credentials in NATS_CREDS={creds} ({text.strip()}): "
                "check that the file's user belongs to an account this server trusts"
            )
        return (
            f"the server refused the connection ({text.strip()}): check the user and password "
            "in NATS_URL, or set NATS_CREDS to the user's .creds file"
        )
    return text


class _QuietTlsClose(logging.Filter):
    """Drops asyncio's note that nats-py's protocol asks to keep a TLS connection half-open
    when the server closes it: harmless, and repeated on every TLS disconnect."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsClose())


async def close(nc: Any) -> None:
    # Not drain(): it cancels its own subscription tasks, and that cancellation escapes into
    # the trio side. Every message in hand is settled before this point anyway.
    try:
        await nc.close()
    except Exception as exc:  # a connection that is already broken has nothing left to close
        log.debug("closing the NATS connection: %s", exc)
