"""Who may drive the control API when no API token guards it.

Without a token, anyone who can reach the port may start and stop tests, so a browser must not
be turned into such a client by a page from elsewhere: the control API takes only
``application/json`` (a cross-origin page cannot send it without a preflight, which this server
never grants), only from its own origin (``Origin``, ``Sec-Fetch-Site``) or one listed in
``ALLOWED_ORIGINS``, and only under a ``Host`` it knows, which defeats DNS rebinding (a foreign
name pointed at this address).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

JSON = "application/json"


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused, and its HTTP status."""

    status: int
    message: str


def known_hosts(allowed_origins: Iterable[str], bind_host: str) -> frozenset[str]:
    """Host names (besides IP addresses and localhost) the generator answers to for control."""
    names = {socket.gethostname().lower()}
    for origin in allowed_origins:
        hostname = urlsplit(origin).hostname
        if hostname:
            names.add(hostname.lower())
    if bind_host and not _is_ip(bind_host):
        names.add(bind_host.lower())
    return frozenset(names)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def hostname_of(host_header: str) -> str | None:
    """The name in a ``Host`` header (``name``, ``name:port``, ``[v6]:port``), lower case."""
    try:
        hostname = urlsplit(f"//{host_header}").hostname
    except ValueError:
        return None
    return hostname.lower() if hostname else None


def host_allowed(host_header: str | None, hosts: frozenset[str]) -> bool:
    """Whether the ``Host`` is an IP address, localhost, or a known name."""
    hostname = hostname_of(host_header or "")
    if hostname is None:
        return False
    if _is_ip(hostname) or hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    return hostname in hosts


def same_origin(origin: str, host_header: str | None) -> bool:
    """Whether ``origin`` is the origin this request was sent to."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(host_header) and netloc.lower() == (host_header or "").lower()


def media_type(content_type: str | None) -> str:
    """``application/json`` from ``application/json; charset=utf-8``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def content_refusal(content_type: str | None, body: bytes | str) -> Refusal | None:
    """A control request's body must be JSON and say so (an empty body may say nothing)."""
    kind = media_type(content_type)
    if kind == JSON or (not kind and not body.strip()):
        return None
    shown = kind or "none"
    return Refusal(415, f"the body must be sent as Content-Type: {JSON} (got {shown})")


def origin_refusal(
    origin: str | None,
    fetch_site: str | None,
    host_header: str | None,
    allowed_origins: tuple[str, ...],
    hosts: frozenset[str],
) -> Refusal | None:
    """Refuse a control request from another site, or under a host name it does not know."""
    if not host_allowed(host_header, hosts):
        return Refusal(
            403,
            f"this generator does not answer to the host name {hostname_of(host_header or '')!r} "
            "for start and stop: open it by IP address or localhost, list the origin in "
            "ALLOWED_ORIGINS, or set API_TOKEN",
        )
    listed = origin is not None and origin in allowed_origins
    if origin is not None and not listed and not same_origin(origin, host_header):
        return Refusal(
            403,
            f"requests from {origin[:100]!r} may not start or stop tests: only the generator's "
            "own page may, unless the origin is listed in ALLOWED_ORIGINS or API_TOKEN is set",
        )
    if fetch_site in ("cross-site", "same-site") and not listed:
        return Refusal(
            403,
            "requests from another site may not start or stop tests: only the generator's own "
            "page may, unless its origin is listed in ALLOWED_ORIGINS or API_TOKEN is set",
        )
    return None
