"""Log-scale buckets for the delay from a key's TTL deadline to its consumption.

Consumers count each key in a bucket in Redis (``test:latency``); anyone can then compute
percentiles from a handful of counters instead of reading every key. Eight buckets per
doubling give percentiles within about 9 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_PER_DOUBLING = 8


def bucket_of(delay_ms: float) -> int:
    """The bucket holding ``delay_ms`` (0 holds everything under 1 ms, negatives included)."""
    if delay_ms < 1:
        return 0
    return int(math.log2(delay_ms) * _PER_DOUBLING) + 1


def bucket_upper_ms(bucket: int) -> float:
    """The largest delay (ms) that falls into ``bucket``."""
    if bucket <= 0:
        return 1.0
    return float(2 ** (bucket / _PER_DOUBLING))


def percentiles(
    counts: Mapping[int, int], wanted: tuple[float, ...] = (50, 95, 99)
) -> dict[str, float] | None:
    """Percentiles (ms, rounded up to their bucket's edge) from bucket counts, or None if empty."""
    total = sum(counts.values())
    if total <= 0:
        return None
    ordered = sorted(counts.items())
    result: dict[str, float] = {}
    for p in wanted:
        rank = math.ceil(total * p / 100)
        seen = 0
        for bucket, count in ordered:
            seen += count
            if seen >= rank:
                result[f"p{p:g}"] = round(bucket_upper_ms(bucket), 1)
                break
    return result
