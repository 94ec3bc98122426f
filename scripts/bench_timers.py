"""Benchmark: keys as timers, on time whatever else Redis holds.

Redis at its defaults (``hz 10``), empty or holding 1,000,000 other keys with 1-2 h TTLs (a
production Redis full of sessions and caches). 10,000 keys at 1 key/ms (``--every-ms``) with
TTL 100 ms, written once with plain ``SET … PX`` and once with ``FCALL expiry_register``,
6 consumers.
Every key is checked: handled once, and its lateness (handler start - deadline) is printed as
p50 / p99 / max, with the fleet's CPU per key.

``make bench`` runs it after the load-test benchmark; ``--others N`` and ``--keys N`` change the
sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dev.local_system import LocalSystem
from dev.timer_handler import HANDLED
from shared import names

REPO = Path(__file__).resolve().parents[1]
TTL_MS = 100
#: Other keys are written this many at a time, by a script inside Redis.
FILL_BATCH = 100_000
_FILL = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('SET', 'other:' .. i, 'x', 'EX', 3600 + (i * 7919) % 3600)
end
return 1
"""


@dataclass
class Row:
    """One paced run's figures."""

    redis: str
    producer: str
    keys: int
    handled: int
    twice: int
    lateness_ms: list[float]
    fleet_us_per_key: float


def fill(client: redis.Redis, count: int) -> None:
    """Write ``count`` other keys with TTLs between 1 and 2 hours."""
    for start in range(0, count, FILL_BATCH):
        client.eval(_FILL, 0, start, min(count, start + FILL_BATCH) - 1)


def write_paced(
    client: redis.Redis, prefix: str, keys: int, registered: bool, every_ms: float
) -> dict[str, int]:
    """Write ``keys`` keys, one every ``every_ms``; their deadlines (unix ms, Redis's clock)."""
    deadlines: dict[str, int] = {}
    started = time.monotonic()
    for i in range(keys):
        key = f"{prefix}{i}"
        time.sleep(max(0.0, started + i * every_ms / 1000 - time.monotonic()))
        if registered:
            deadlines[key] = int(
                client.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, i, TTL_MS)
            )
        else:
            pipe = client.pipeline(transaction=False)
            pipe.set(key, i, px=TTL_MS)
            pipe.pexpiretime(key)
            deadlines[key] = int(pipe.execute()[1])
    return deadlines


def handled_records(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    records = [json.loads(r) for r in client.lrange(HANDLED, 0, -1)]
    return [r for r in records if r["key"].startswith(prefix)]


def fleet_cpu(system: LocalSystem) -> float:
    return sum(
        sum(psutil.Process(p.popen.pid).cpu_times()[:2])
        for p in system.consumer_processes
        if p.popen is not None
    )


def paced_run(system: LocalSystem, label: str, keys: int, registered: bool, every_ms: float) -> Row:
    client = redis.Redis.from_url(system.redis_url or "", decode_responses=True)
    producer = "expiry_register" if registered else "plain SET PX"
    prefix = f"timer:{'r' if registered else 'p'}:"
    cpu_before = fleet_cpu(system)
    deadlines = write_paced(client, prefix, keys, registered, every_ms)
    give_up = time.monotonic() + 90
    while len(handled_records(client, prefix)) < keys and time.monotonic() < give_up:
        time.sleep(0.2)
    time.sleep(1)  # a key handled twice would show by now
    cpu = fleet_cpu(system) - cpu_before
    records = handled_records(client, prefix)
    counts = Counter(r["key"] for r in records)
    first = {r["key"]: r for r in reversed(records)}
    lateness = sorted(
        float(r["handled_at_ms"] - deadlines[key]) for key, r in first.items() if key in deadlines
    )
    return Row(
        redis=label,
        producer=producer,
        keys=keys,
        handled=len(counts),
        twice=sum(1 for n in counts.values() if n > 1),
        lateness_ms=lateness,
        fleet_us_per_key=cpu / keys * 1e6,
    )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def run(others: int, keys: int, consumers: int, every_ms: float) -> list[Row]:
    label = f"{others:,} other TTL keys" if others else "empty"
    with tempfile.TemporaryDirectory(prefix="bench-timers-") as tmp:
        system = LocalSystem(
            Path(tmp),
            consumers=consumers,
            # Redis at its defaults: hz 10, active-expire-effort 1 (after the fixture's own).
            redis_args=("--hz", "10", "--active-expire-effort", "1"),
            env={
                "LOG_LEVEL": "WARNING",
                "KEY_PATTERNS": "timer:*",
                "HANDLER": "dev.timer_handler:record",
                "PYTHONPATH": str(REPO),
            },
        )
        try:
            system.start()
            if others:
                fill(redis.Redis.from_url(system.redis_url or ""), others)
            time.sleep(4)  # listener slots settle (a lease and a renewal)
            return [
                paced_run(system, label, keys, registered, every_ms) for registered in (False, True)
            ]
        finally:
            system.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=6)
    parser.add_argument("--every-ms", type=float, default=1.0, help="one key every this many ms")
    args = parser.parse_args()
    rows = [
        *run(0, args.keys, args.consumers, args.every_ms),
        *run(args.others, args.keys, args.consumers, args.every_ms),
    ]
    print()
    print(
        f"Timers: {args.keys:,} keys, one every {args.every_ms:g} ms, TTL {TTL_MS} ms, "
        f"{args.consumers} consumers, "
        "Redis at its defaults (hz 10)"
    )
    print(
        "| Redis | written with | handled once | twice | lateness p50 / p99 / max (ms) "
        "| fleet CPU/key |"
    )
    print("|---|---|---:|---:|---|---:|")
    for row in rows:
        late = " / ".join(f"{percentile(row.lateness_ms, p):.0f}" for p in (50, 99, 100))
        print(
            f"| {row.redis} | {row.producer} | {row.handled:,} of {row.keys:,} | {row.twice} "
            f"| {late} | {row.fleet_us_per_key:,.0f} µs |"
        )
    return 0 if all(r.handled == r.keys and r.twice == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
