"""Configuration from the environment, read once into typed objects (12-factor).

A bad value raises ``ConfigError`` naming the variable; entrypoints turn it into a one-line
message and exit status 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared import names
from shared.patterns import KeyPatterns, PatternError
from shared.redis.address import RedisAddress


class ConfigError(ValueError):
    """A configuration variable has a value the service cannot use."""


@dataclass(frozen=True)
class CommonConfig:
    """Settings both services read."""

    redis_url: str
    #: One NATS server URL, or several separated by commas (a cluster's seed servers).
    nats_url: str
    nats_creds: str | None
    log_level: str
    log_format: str
    #: A PEM file of the CA that signed the NATS servers' certificates (tls://), if not public.
    nats_ca_file: str | None = None

    @property
    def nats_servers(self) -> list[str]:
        """``nats_url`` as the list of servers nats-py connects to."""
        return split_servers(self.nats_url)


@dataclass(frozen=True)
class StreamSettings:
    """How JetStream keeps the work queue: replicas (1 per node of a cluster) and storage."""

    replicas: int = 1
    #: ``memory`` (the design's default: fast, lost when the servers restart) or ``file``.
    storage: str = "memory"


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of the generator service."""

    common: CommonConfig
    host: str
    port: int
    api_token: str | None
    web_dist: str
    drain_timeout_s: float
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class ConsumerConfig:
    """Settings of one consumer process."""

    common: CommonConfig
    consumer_id: str
    health_host: str
    health_port: int
    batch_size: int
    claim_lease_ms: int
    sweep_interval_ms: int
    sweep_grace_ms: int
    shutdown_grace_s: float
    key_patterns: tuple[str, ...] = ("gen-key:*",)
    dedup_window_ms: int = 5000
    handler: str = "generator.handler:count"
    handler_concurrency: int = 64
    handler_timeout_ms: int = 30_000
    fleet: str = ""
    expiry_listeners: int = 2
    listener_lease_ms: int = 3000
    #: How often the listener in slot 0 touches registered keys just past their deadline, so
    #: that Redis announces them at once (``consumer.nudger``); 0: never.
    expiry_nudge_ms: int = 10
    #: Opt-in: how far ahead the listener in slot 0 reads registered deadlines, to claim each
    #: key at its deadline itself (``consumer.timers``, instead of touching it); 0: off.
    timer_lookahead_ms: int = 0
    #: Consumers other than the lead listener (slot 0) get messages only while this many wait
    #: in the queue (the lead works a trickle alone, in bigger batches); 0: all at any rate.
    pull_overflow_pending: int = 64
    stream: StreamSettings = StreamSettings()


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_LOG_FORMATS = ("text", "json")
_STORAGES = ("memory", "file")


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


#: One Redis server, or (``+cluster``) a Redis Cluster reached through any of its nodes.
_REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _get(env, name, default)
    expected = " or ".join(s + "://host:port" for s in schemes)
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
    except ValueError as exc:
        raise ConfigError(
            f"{name}={_redact_loosely(value)} is not a valid URL ({exc}): expected {expected}"
        ) from None
    if parts.scheme not in schemes or not hostname:
        raise ConfigError(f"{name}={_redact(value)!s} is not a valid URL: expected {expected}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{name} has a bad port: {exc}") from None
    if not _valid_host(hostname):
        raise ConfigError(f"{name} names the host {hostname!r}, which is not a valid host name")
    if parts.scheme in _REDIS_SCHEMES:
        _redis_db(name, parts.path, parts.query)
    if parts.scheme.endswith("+cluster") and parts.path.strip("/") not in ("", "0"):
        raise ConfigError(f"{name}: a Redis Cluster has only database 0, not {parts.path!r}")
    return value


def _redis_url(env: Mapping[str, str], name: str, default: str) -> str:
    """A Redis URL, checked by the parser every part of the system reads it with."""
    value = _get(env, name, default)
    try:
        address = RedisAddress.from_url(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={_redact_loosely(value)} is not usable: {exc}") from None
    if address.socket_path is None:
        _url(env, name, value, _REDIS_SCHEMES)
    if address.ca_file is not None and not os.path.isfile(address.ca_file):
        raise ConfigError(
            f"{name} names ssl_ca_certs={address.ca_file!r}, which is not a readable file"
        )
    return value


def _redis_db(name: str, path: str, query: str) -> None:
    """The database number of a Redis URL must be a number (``/0``, or ``?db=0``)."""
    db = path.strip("/")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == "db":
            db = value
    if db and not (db.isascii() and db.isdigit()):
        raise ConfigError(
            f"{name} selects the database {db[:40]!r}: it must be a number, as in "
            "redis://host:6379/0"
        )


def _redact_loosely(url: str) -> str:
    """A URL that does not parse, with anything between ``://`` and ``@`` hidden."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return repr(scheme + sep + rest)


def _valid_host(host: str) -> bool:
    """An IP address, or a host name of letters, digits and hyphens (not all-numeric)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return True
    if not host or len(host) > 253:
        return False
    labels = host.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # looks like an IPv4 address, but is not one (999.1.1.1)
    return all(_HOST_LABEL.fullmatch(label) for label in labels)


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    value = _get(env, name, default)
    if not _valid_host(value):
        raise ConfigError(
            f"{name}={value[:100]!r} is not an IP address or host name: use for instance "
            "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        )
    return value


def split_servers(value: str) -> list[str]:
    """The servers of a comma-separated URL list (blank entries ignored)."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _url_list(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _get(env, name, default)
    servers = split_servers(value)
    if not servers:
        raise ConfigError(f"{name} is empty: expected one URL or several separated by commas")
    for server in servers:
        _url({name: server}, name, default, schemes)
    return ",".join(servers)


def _file(env: Mapping[str, str], name: str) -> str | None:
    path = _get(env, name, "") or None
    if path is not None and not os.path.isfile(path):
        raise ConfigError(f"{name}={path!r} is not a readable file")
    return path


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _get(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: expected {low}..{high}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _get(env, name, default)
    normalized = value.upper() if choices is _LOG_LEVELS else value.lower()
    if normalized not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return normalized


def _redact(url: str) -> str:
    """``url`` (or a comma-separated list of URLs) without passwords, for messages and logs."""
    if "," in url:
        return ",".join(_redact(part) for part in url.split(","))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return _redact(url)


def load_common(env: Mapping[str, str]) -> CommonConfig:
    """Read the settings both services share."""
    redis_url = _redis_url(env, "REDIS_URL", "redis://localhost:6379/0")
    return CommonConfig(
        redis_url=redis_url,
        nats_url=_url_list(env, "NATS_URL", "nats://localhost:4222", ("nats", "tls")),
        nats_creds=_file(env, "NATS_CREDS"),
        log_level=_choice(env, "LOG_LEVEL", "INFO", _LOG_LEVELS),
        log_format=_choice(env, "LOG_FORMAT", "text", _LOG_FORMATS),
        nats_ca_file=_file(env, "NATS_CA_FILE"),
    )


def load_stream(env: Mapping[str, str]) -> StreamSettings:
    """``STREAM_REPLICAS`` and ``STREAM_STORAGE``: how JetStream keeps the work queue."""
    return StreamSettings(
        replicas=_int(env, "STREAM_REPLICAS", 1, 1, 5),
        storage=_choice(env, "STREAM_STORAGE", "memory", _STORAGES),
    )


def _default_web_dist() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "web", "dist"))


def load_generator(env: Mapping[str, str] = os.environ) -> GeneratorConfig:
    """Read the generator's settings."""
    origins = tuple(o.strip() for o in _get(env, "ALLOWED_ORIGINS", "").split(",") if o.strip())
    return GeneratorConfig(
        common=load_common(env),
        host=_host(env, "HOST", "127.0.0.1"),
        port=_int(env, "PORT", 8080, 1, 65535),
        api_token=_get(env, "API_TOKEN", "") or None,
        web_dist=_get(env, "WEB_DIST", _default_web_dist()),
        drain_timeout_s=float(_int(env, "DRAIN_TIMEOUT_S", 30, 1, 3600)),
        allowed_origins=origins,
    )


def load_consumer(env: Mapping[str, str] = os.environ) -> ConsumerConfig:
    """Read one consumer's settings."""
    # Host name and process id: two consumers on one host never share a counter.
    consumer_id = _get(env, "CONSUMER_ID", f"{socket.gethostname()}-{os.getpid()}")
    if len(consumer_id) > 128 or not all(c.isalnum() or c in "-_.:" for c in consumer_id):
        raise ConfigError(
            f"CONSUMER_ID={consumer_id!r} must be 1-128 letters, digits or - _ . : characters"
        )
    return ConsumerConfig(
        common=load_common(env),
        consumer_id=consumer_id,
        health_host=_host(env, "HEALTH_HOST", "0.0.0.0"),
        health_port=_int(env, "HEALTH_PORT", 8081, 0, 65535),
        batch_size=_int(env, "BATCH_SIZE", 512, 1, 10000),
        claim_lease_ms=_int(env, "CLAIM_LEASE_MS", 10_000, 1000, 3_600_000),
        sweep_interval_ms=_int(env, "SWEEP_INTERVAL_MS", 1000, 50, 600_000),
        sweep_grace_ms=_int(env, "SWEEP_GRACE_MS", 2000, 0, 600_000),
        shutdown_grace_s=float(_int(env, "SHUTDOWN_GRACE_S", 5, 1, 300)),
        key_patterns=_key_patterns(_get(env, "KEY_PATTERNS", "gen-key:*")),
        dedup_window_ms=_int(env, "DEDUP_WINDOW_MS", 5000, 100, 86_400_000),
        handler=_get(env, "HANDLER", "generator.handler:count"),
        handler_concurrency=_int(env, "HANDLER_CONCURRENCY", 64, 1, 10_000),
        handler_timeout_ms=_int(env, "HANDLER_TIMEOUT_MS", 30_000, 100, 3_600_000),
        fleet=_fleet(_get(env, "FLEET", "")),
        expiry_listeners=_int(env, "EXPIRY_LISTENERS", 2, 0, 1000),
        listener_lease_ms=_int(env, "LISTENER_LEASE_MS", 3000, 500, 600_000),
        expiry_nudge_ms=_int(env, "EXPIRY_NUDGE_MS", 10, 0, 60_000),
        timer_lookahead_ms=_int(env, "TIMER_LOOKAHEAD_MS", 0, 0, 60_000),
        pull_overflow_pending=_int(env, "PULL_OVERFLOW_PENDING", 64, 0, 1_000_000),
        stream=load_stream(env),
    )


def _fleet(fleet: str) -> str:
    try:
        names.queue_of(fleet)
    except ValueError as exc:
        raise ConfigError(f"FLEET: {exc}") from None
    return fleet


def _key_patterns(raw: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in raw.split(",") if p.strip())
    try:
        KeyPatterns(patterns)
    except PatternError as exc:
        raise ConfigError(
            f"KEY_PATTERNS={raw!r} is not a list of Redis glob patterns: {exc}"
        ) from None
    return patterns
