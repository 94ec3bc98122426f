"""``REDIS_URL``: the one parser of it, for every part of the system that reaches Redis.

redis-py's own ``parse_url`` reads the URL, so the pub/sub listeners, the trio-native script
connections and redis-py's clients agree on every form redis-py accepts: the database in the
path (``/3``) or the query (``?db=3``), user and password (percent-encoded), ``rediss://`` with
``ssl_ca_certs``, ``unix:///path/to/socket``. ``redis+cluster://`` and ``rediss+cluster://``
name one node (a seed) of a Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

#: One Redis server (TCP or a unix socket), or (``+cluster``) a Redis Cluster's seed node.
SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
#: Options of a URL that the trio-native connections follow themselves; with any other
#: (``socket_timeout``, …) the scripts go through redis-py, which follows them all.
_NATIVE_OPTIONS = frozenset(
    {"host", "port", "db", "username", "password", "path", "ssl_ca_certs", "connection_class"}
)


class RedisUrlError(ValueError):
    """A ``REDIS_URL`` that cannot be used, with what is wrong with it."""


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to reach Redis, read from a ``REDIS_URL``."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    #: The CA to trust for ``rediss://`` (the URL's ``ssl_ca_certs``).
    ca_file: str | None = None
    #: The URL names a seed node of a Redis Cluster (``redis+cluster``/``rediss+cluster``).
    cluster: bool = False
    #: A unix socket's path (``unix://``); host and port are then unused.
    socket_path: str | None = None
    #: Whether the URL has only options the trio-native connections follow.
    native: bool = True
    #: The URL as redis-py's clients take it (``+cluster`` removed).
    client_url: str = ""

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        """Parse ``url``; ``RedisUrlError`` says what is wrong with it."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in SCHEMES:
            raise RedisUrlError(
                f"expected a URL starting with {', '.join(s + '://' for s in SCHEMES)}"
            )
        cluster = scheme.endswith("+cluster")
        client_url = f"{scheme.removesuffix('+cluster')}://{rest}"
        try:
            options: dict[str, Any] = parse_url(client_url)  # type: ignore[no-untyped-call]
        except ValueError as exc:
            raise RedisUrlError(str(exc)) from None
        db = options.get("db", 0)
        if not isinstance(db, int) or db < 0:
            raise RedisUrlError(f"the database must be a number, as in redis://host:6379/0: {db!r}")
        if cluster and db:
            raise RedisUrlError(f"a Redis Cluster has only database 0, not {db}")
        connection = options.get("connection_class")
        socket_path = options.get("path") if connection is UnixDomainSocketConnection else None
        if scheme == "unix" and not socket_path:
            raise RedisUrlError(
                "a unix:// URL needs the socket's path, as in unix:///run/redis.sock"
            )
        if socket_path is None and not options.get("host"):
            raise RedisUrlError("the URL names no host")
        try:
            port = int(options.get("port") or 6379)
        except ValueError:
            raise RedisUrlError(f"bad port {options.get('port')!r}") from None
        return cls(
            host=str(options.get("host") or "localhost"),
            port=port,
            db=db,
            username=options.get("username") or None,
            password=options.get("password"),
            tls=connection is SSLConnection,
            ca_file=options.get("ssl_ca_certs"),
            cluster=cluster,
            socket_path=socket_path,
            native=set(options) <= _NATIVE_OPTIONS,
            client_url=client_url,
        )

    def at(self, node: tuple[str, int]) -> RedisAddress:
        """This address pointed at one ``node`` of the cluster (same credentials and TLS)."""
        return replace(self, host=node[0], port=node[1], cluster=False)
