"""Validation of ``POST /api/start`` bodies: every error names the field at fault."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from generator.documents import TestConfigDocument


class RequestError(ValueError):
    """A request the API rejects with 400; ``field`` names the input at fault, if one is."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, str]:
        """The JSON error body."""
        body = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class TestConfig:
    """Parameters of one load test (times in milliseconds)."""

    __test__ = False  # not a pytest test class, despite the name

    num_keys: int = 1000
    key_delay: int = 1
    key_ttl: int = 100
    dedup_window: int = 5000

    def as_dict(self) -> dict[str, int]:
        """The config as JSON-ready values."""
        return asdict(self)

    def as_document(self) -> TestConfigDocument:
        """The config as the status document shows it."""
        return TestConfigDocument(
            num_keys=self.num_keys,
            key_delay=self.key_delay,
            key_ttl=self.key_ttl,
            dedup_window=self.dedup_window,
        )


#: field -> (lowest, highest, what it is)
LIMITS: dict[str, tuple[int, int, str]] = {
    "num_keys": (1, 1_000_000, "number of keys"),
    "key_delay": (0, 60_000, "delay per key in ms"),
    "key_ttl": (1, 3_600_000, "key TTL in ms"),
    "dedup_window": (1, 86_400_000, "dedup window in ms"),
}


def _integer(field: str, value: Any) -> int:
    low, high, what = LIMITS[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(
            f"{field} must be an integer ({what}), got {type(value).__name__}", field
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise RequestError(f"{field} must be a whole number ({what}), got {value!r}", field)
        value = int(value)
    if not low <= value <= high:
        raise RequestError(f"{field} must be between {low:,} and {high:,} ({what})", field)
    return int(value)


def parse_start_request(body: Any) -> TestConfig:
    """A ``TestConfig`` from a decoded JSON body; missing fields take their defaults."""
    if body is None:
        return TestConfig()
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in LIMITS)
    if unknown:
        name = unknown[0][:64]
        raise RequestError(f"unknown field {name!r}: expected {', '.join(LIMITS)}", name)
    values = {field: _integer(field, value) for field, value in body.items()}
    return TestConfig(**values)
