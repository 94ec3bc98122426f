"""The documents the generator's API sends, typed: ``/api/status`` and what it holds.

The page reads them as the interfaces of ``web/src/lib/types.ts`` (documented in
``docs/API.md``); a test holds the two to the same fields, optional and nullable alike.
"""

from __future__ import annotations

from typing import TypedDict

from shared.redis_outage import RedisProblemDocument

__all__ = [
    "DeadLetterDocument",
    "HistorySampleDocument",
    "LatencyDocument",
    "RateSampleDocument",
    "RedisProblemDocument",
    "StatusDocument",
    "TestConfigDocument",
    "VerdictDocument",
]


class TestConfigDocument(TypedDict):
    num_keys: int
    key_delay: int
    key_ttl: int
    dedup_window: int


class VerdictDocument(TypedDict):
    exactly_once: bool
    expected: int
    consumed: int
    missing: int
    duplicates: int
    dead_letters: int


class LatencyDocument(TypedDict):
    p50: float
    p95: float
    p99: float
    count: int


class DeadLetterDocument(TypedDict):
    key: str
    test_id: str
    claim_id: str
    attempts: int
    error: str
    at: float


class RateSampleDocument(TypedDict):
    t: float
    generation_rate: float
    consumption_rate: float


class HistorySampleDocument(RateSampleDocument):
    state: str
    generated: int
    consumed: int


class StatusDocument(TypedDict):
    is_running: bool
    state: str
    test_id: str | None
    config: TestConfigDocument | None
    generated: int
    consumed: int
    in_flight: int
    progress: float
    generation_rate: float
    consumption_rate: float
    elapsed_s: float
    started_at: float | None
    finished_at: float | None
    consumers: dict[str, int]
    listeners: list[str]
    latency_ms: LatencyDocument | None
    pending: int
    claimed_in_flight: int
    recovered: int
    redelivered: int
    dead_letters: int
    recent_dead_letters: list[DeadLetterDocument]
    verdict: VerdictDocument | None
    reason: str | None
    auth_required: bool
    redis_problem: RedisProblemDocument | None
    rate_sample: HistorySampleDocument | None
