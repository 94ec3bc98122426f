"""Prometheus metrics of both services (served at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS = Counter(
    "expiry_events_total", "Expired-key events received from Redis", ["kind"]
)  # kind: matched | ignored
CLAIMS = Counter("dedup_claims_total", "Claim attempts on expired keys", ["outcome"])  # won | lost
RECOVERED = Counter("recovered_keys_total", "Keys claimed by the sweeper (no event was heard)")
PUBLISHED = Counter("published_total", "Keys published to JetStream", ["outcome"])  # ok | failed
CONSUMED = Counter("consumed_total", "Keys counted as consumed by this process")
DUPLICATES = Counter("duplicate_deliveries_total", "Deliveries of keys already counted")
REDELIVERIES = Counter("redeliveries_total", "JetStream deliveries after the first")
STALE = Counter("stale_messages_total", "Messages of an earlier test, acknowledged and dropped")
DEAD_LETTERS = Counter("dead_letters_total", "Messages given up on (poison or max deliveries)")
HANDLED = Counter(
    "handler_calls_total", "Calls of the handler by outcome", ["outcome"]
)  # outcome: ok | failed | timeout
HANDLER_SECONDS = Histogram(
    "handler_seconds",
    "Time one handler call took",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
ERRORS = Counter("errors_total", "Errors by task", ["task"])
BATCH_SIZE = Histogram(
    "batch_size",
    "Items per batch by stage",
    ["stage"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000),
)
CONSUMPTION_DELAY = Histogram(
    "consumption_delay_seconds",
    "Delay from a key's TTL deadline to its consumption",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
STAGE_SECONDS = Histogram(
    "stage_seconds",
    "Time spent per batch by stage",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
GENERATED = Counter("generated_keys_total", "Keys written by the generator")
TESTS = Counter("tests_total", "Tests started by the generator")
READY = Gauge("ready", "1 when the process is ready to do its work")


def render() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
