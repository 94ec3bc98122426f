"""Prometheus metrics, one registry per service, every name under ``expiry_pipeline_``.

A consumer's ``/metrics`` serves ``CONSUMER_REGISTRY``, the generator's ``GENERATOR_REGISTRY``:
neither exports the other's series. Names carry their unit (``_total``, ``_seconds``,
``_keys``, ``_messages``); labels are small fixed sets (never a key name). Every label value
a metric can take is created at import, so a dashboard shows 0 rather than "no data" before
the first event of a kind. The list, with what each means, is in docs/METRICS.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

PREFIX = "expiry_pipeline"

# The ``*_created`` series double every counter and no dashboard or rule reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


CONSUMER_REGISTRY = _registry()
GENERATOR_REGISTRY = _registry()

# --- consumer: the pipeline ---------------------------------------------------------------

EVENTS = Counter(
    "expiry_events_total",
    "Expired-key events heard from Redis, by kind (matched: a handled key pattern; ignored)",
    ["kind"],
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
CLAIMS = Counter(
    "claims_total",
    "Claim attempts on expired keys, by outcome (won: this consumer owns the key; lost)",
    ["outcome"],
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
RECOVERED = Counter(
    "recovered_keys_total",
    "Keys the sweeper claimed because no expiry event claimed them, or their lease ran out",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
PUBLISHED = Counter(
    "published_keys_total",
    "Keys published to the JetStream work queue, by outcome (ok, failed)",
    ["outcome"],
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
CONSUMED = Counter(
    "consumed_keys_total",
    "Keys counted as consumed (first delivery) by this consumer",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
DUPLICATES = Counter(
    "duplicate_deliveries_total",
    "Deliveries of keys already counted (refused, then acknowledged)",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
REDELIVERIES = Counter(
    "redeliveries_total",
    "JetStream deliveries after a message's first",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
STALE = Counter(
    "stale_messages_total",
    "Messages of an earlier test, acknowledged and dropped",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
DEAD_LETTERS = Counter(
    "dead_letters_total",
    "Messages given up on (unreadable, or delivered the maximum number of times)",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
HANDLED = Counter(
    "handler_calls_total",
    "Calls of the key handler, by outcome (ok, failed, timeout)",
    ["outcome"],
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "handler_duration_seconds",
    "Time one handler call took",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
ERRORS = Counter(
    "errors_total",
    "Errors caught and retried, by task",
    ["task"],
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
BATCH_SIZE = Histogram(
    "batch_size_keys",
    "Keys per batch, by stage (claim, consume)",
    ["stage"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
CONSUMPTION_DELAY = Histogram(
    "consumption_delay_seconds",
    "Delay from a key's TTL deadline to its consumption",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
STAGE_SECONDS = Histogram(
    "stage_duration_seconds",
    "Time spent per batch, by stage (claim, publish, count)",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
#: Edges (s) fine around the first milliseconds, where a timer's punctuality is decided.
LATENESS_BUCKETS = (
    *(ms / 1000 for ms in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 75)),
    *(0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60),
)
TIMER_LATENESS = Histogram(
    "timer_lateness_seconds",
    "How long after its registered deadline a key reached each stage (claimed, published, "
    "pulled, started: its handler called, completed)",
    ["stage"],
    buckets=LATENESS_BUCKETS,
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
READY = Gauge(
    "consumer_ready",
    "1 when the consumer is ready: subscribed to expirations and bound to JetStream",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
LISTENING = Gauge(
    "consumer_listening",
    "1 while the consumer is subscribed to Redis expiry events",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
BOUND = Gauge(
    "consumer_bound",
    "1 while the consumer is bound to the JetStream durable pull consumer",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
CONSUMER_INFO = Gauge(
    "consumer_info",
    "Always 1; its label names the consumer (CONSUMER_ID, the pod name in Kubernetes)",
    ["consumer_id"],
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
REDIS_UP = Gauge(
    "redis_up",
    "1 when Redis answered this process's last PING",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
NATS_UP = Gauge(
    "nats_up",
    "1 when NATS answered this process's last JetStream request",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
JETSTREAM_PENDING = Gauge(
    "jetstream_pending_messages",
    "Messages in the work queue not yet delivered to any consumer",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
JETSTREAM_ACK_PENDING = Gauge(
    "jetstream_ack_pending_messages",
    "Messages delivered to a consumer and not yet acknowledged",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)
JETSTREAM_REDELIVERED = Gauge(
    "jetstream_redelivered_messages",
    "Messages currently being redelivered by JetStream",
    namespace=PREFIX,
    registry=CONSUMER_REGISTRY,
)

# Unknown (NaN) until the first probe: a consumer still connecting has not asked yet, and
# "== 0" alerts must not fire for it (NaN compares false).
REDIS_UP.set(float("nan"))
NATS_UP.set(float("nan"))

# --- generator: the load tester -----------------------------------------------------------

GENERATED = Counter(
    "generated_keys_total",
    "Keys written with a TTL by the load tester",
    namespace=PREFIX,
    registry=GENERATOR_REGISTRY,
)
TESTS = Counter(
    "load_tests_total", "Load tests started", namespace=PREFIX, registry=GENERATOR_REGISTRY
)
GENERATOR_REDIS_UP = Gauge(
    "redis_up",
    "1 when Redis answered the generator's last PING",
    namespace=PREFIX,
    registry=GENERATOR_REGISTRY,
)

#: Every label value each labelled metric can take, created up front (see the module note).
LABEL_VALUES: dict[Counter | Histogram, tuple[str, ...]] = {
    EVENTS: ("matched", "ignored"),
    HANDLED: ("ok", "failed", "timeout"),
    CLAIMS: ("won", "lost"),
    PUBLISHED: ("ok", "failed"),
    ERRORS: ("expiry_listener", "dedup_publisher", "pull_worker", "sweeper", "nudger", "timers"),
    BATCH_SIZE: ("claim", "consume"),
    STAGE_SECONDS: ("claim", "publish", "count"),
    TIMER_LATENESS: ("claimed", "published", "pulled", "started", "completed"),
}
for _metric, _values in LABEL_VALUES.items():
    for _value in _values:
        _metric.labels(_value)


def observe_lateness(stage: str, deadlines: Iterable[str]) -> None:
    """Count how late after their registered deadlines (unix ms; "" for none, skipped) keys
    reached ``stage``, now."""
    histogram = TIMER_LATENESS.labels(stage)
    now_ms = time.time() * 1000
    for deadline in deadlines:
        if deadline:
            histogram.observe(max(0.0, now_ms - int(deadline)) / 1000)


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """``registry``'s metrics in Prometheus text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
