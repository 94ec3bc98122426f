"""Benchmark: keys as timers, on time whatever else Redis holds.

Redis at its defaults (``hz 10``), empty or holding 1,000,000 other keys with 1-2 h TTLs (a
production Redis full of sessions and caches). 10,000 keys at 1 key/ms (``--every-ms``) with
TTL 100 ms, written once with plain ``SET … PX`` and once with ``FCALL expiry_register``,
6 consumers.
Every key is checked: handled once, and its lateness (handler start - deadline) is printed as
p50 / p99 / max, with the fleet's CPU per key. For the registered keys a second table follows
each hop: how late after the deadline the keys were claimed, published (JetStream stored
them), pulled, started (handler called) and completed, p50 / p99 from the consumers'
``expiry_pipeline_timer_lateness_seconds`` histograms (interpolated within their buckets).
A last run measures the same registered timers while a burst of ``--burst`` registered keys
(falling due together, 1 s into the run) is being worked, checking every burst key too.

``make bench`` runs it after the load-test benchmark; ``--others N``, ``--keys N`` and
``--burst N`` change the sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

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
    #: Stage -> (p50, p99) ms after the deadline, from the consumers' histograms.
    hops: dict[str, tuple[float, float]]
    #: Keys of the burst worked meanwhile (0: none), how many handled, how many twice.
    burst: int = 0
    burst_handled: int = 0
    burst_twice: int = 0

    @property
    def exactly_once(self) -> bool:
        return (
            self.handled == self.keys
            and self.twice == 0
            and self.burst_handled == self.burst
            and self.burst_twice == 0
        )


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


STAGES = ("claimed", "published", "pulled", "started", "completed")


def lateness_buckets(system: LocalSystem) -> dict[str, dict[float, float]]:
    """Stage -> {bucket edge (s): keys at or under it}, summed over the consumers."""
    summed: dict[str, dict[float, float]] = {stage: {} for stage in STAGES}
    for port in system.health_ports:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "expiry_pipeline_timer_lateness_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    per_stage = summed[sample.labels["stage"]]
                    edge = float(sample.labels["le"])
                    per_stage[edge] = per_stage.get(edge, 0.0) + sample.value
    return summed


def histogram_percentile(cumulative: dict[float, float], p: float) -> float:
    """The ``p``th percentile (ms) of a cumulative histogram, interpolated within its bucket."""
    edges = sorted(cumulative)
    total = cumulative[edges[-1]] if edges else 0
    if total <= 0:
        return float("nan")
    rank = p / 100 * total
    lower, below = 0.0, 0.0
    for edge in edges:
        if cumulative[edge] >= rank:
            if edge == float("inf"):
                return lower * 1000
            inside = cumulative[edge] - below
            share = (rank - below) / inside if inside else 1.0
            return (lower + (edge - lower) * share) * 1000
        lower, below = edge, cumulative[edge]
    return lower * 1000


def hops_between(
    before: dict[str, dict[float, float]], after: dict[str, dict[float, float]]
) -> dict[str, tuple[float, float]]:
    """Stage -> (p50, p99) ms of what was counted between two scrapes."""
    hops: dict[str, tuple[float, float]] = {}
    for stage in STAGES:
        delta = {edge: count - before[stage].get(edge, 0.0) for edge, count in after[stage].items()}
        hops[stage] = (histogram_percentile(delta, 50), histogram_percentile(delta, 99))
    return hops


def write_burst(client: redis.Redis, prefix: str, keys: int, ttl_ms: int) -> None:
    """Register ``keys`` keys falling due together, ``ttl_ms`` from now (give or take the
    writing), 1,000 to a call."""
    pipe = client.pipeline(transaction=False)
    for start in range(0, keys, 1000):
        chunk = [f"{prefix}{i}" for i in range(start, min(keys, start + 1000))]
        pipe.fcall(
            names.FN_REGISTER_MANY,
            len(chunk) + 1,
            *chunk,
            names.EXPIRY_DUE,
            ttl_ms,
            *["v"] * len(chunk),
        )
    pipe.execute()


def paced_run(
    system: LocalSystem,
    label: str,
    keys: int,
    registered: bool,
    every_ms: float,
    burst: int = 0,
) -> Row:
    client = redis.Redis.from_url(system.redis_url or "", decode_responses=True)
    producer = "expiry_register" if registered else "plain SET PX"
    prefix = f"timer:{'r' if registered else 'p'}:{'b' if burst else ''}"
    cpu_before = fleet_cpu(system)
    buckets_before = lateness_buckets(system)
    if burst:
        write_burst(client, "timer:burst:", burst, 1000)
    deadlines = write_paced(client, prefix, keys, registered, every_ms)
    give_up = time.monotonic() + 90 + burst / 1000
    while len(handled_records(client, prefix)) < keys and time.monotonic() < give_up:
        time.sleep(0.2)
    if burst:
        while len(handled_records(client, "timer:burst:")) < burst and time.monotonic() < give_up:
            time.sleep(0.5)
    time.sleep(1)  # a key handled twice would show by now
    cpu = fleet_cpu(system) - cpu_before
    hops = hops_between(buckets_before, lateness_buckets(system))
    records = handled_records(client, prefix)
    counts = Counter(r["key"] for r in records)
    first = {r["key"]: r for r in reversed(records)}
    lateness = sorted(
        float(r["handled_at_ms"] - deadlines[key]) for key, r in first.items() if key in deadlines
    )
    bursts = Counter(r["key"] for r in handled_records(client, "timer:burst:"))
    return Row(
        redis=label,
        producer=producer,
        keys=len(deadlines),
        handled=len(counts),
        twice=sum(1 for n in counts.values() if n > 1),
        lateness_ms=lateness,
        fleet_us_per_key=cpu / (len(deadlines) + burst) * 1e6,
        hops=hops,
        burst=burst,
        burst_handled=len(bursts),
        burst_twice=sum(1 for n in bursts.values() if n > 1),
    )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def run(
    others: int, keys: int, consumers: int, every_ms: float, burst: int = 0, lookahead_ms: int = 0
) -> list[Row]:
    label = f"{others:,} other TTL keys" if others else "empty"
    if burst:
        label += f", {burst:,}-key burst"
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
                "TIMER_LOOKAHEAD_MS": str(lookahead_ms),
            },
        )
        try:
            system.start()
            if others:
                fill(redis.Redis.from_url(system.redis_url or ""), others)
            time.sleep(4)  # listener slots settle (a lease and a renewal)
            if burst:
                return [paced_run(system, label, keys, True, every_ms, burst)]
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
    parser.add_argument("--burst", type=int, default=100_000, help="0: no burst run")
    parser.add_argument(
        "--lookahead-ms",
        type=int,
        default=0,
        help="TIMER_LOOKAHEAD_MS for the consumers: claim keys at their deadline (0: touch them)",
    )
    args = parser.parse_args()
    rows = [
        *run(0, args.keys, args.consumers, args.every_ms, 0, args.lookahead_ms),
        *run(args.others, args.keys, args.consumers, args.every_ms, 0, args.lookahead_ms),
    ]
    if args.burst:
        rows += run(0, args.keys, args.consumers, args.every_ms, args.burst, args.lookahead_ms)
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
        late = " / ".join(f"{percentile(row.lateness_ms, p):.1f}" for p in (50, 99, 100))
        print(
            f"| {row.redis} | {row.producer} | {row.handled:,} of {row.keys:,} | {row.twice} "
            f"| {late} | {row.fleet_us_per_key:,.0f} µs |"
        )
    for row in rows:
        if row.burst:
            print(
                f"The burst beside the last run: {row.burst_handled:,} of {row.burst:,} keys "
                f"handled, {row.burst_twice} twice."
            )
    print()
    print("Registered keys, hop by hop: ms after the deadline, p50 / p99")
    print("| Redis | " + " | ".join(STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    for row in rows:
        if row.producer != "expiry_register":
            continue
        cells = " | ".join(f"{row.hops[s][0]:.1f} / {row.hops[s][1]:.1f}" for s in STAGES)
        print(f"| {row.redis} | {cells} |")
    return 0 if all(row.exactly_once for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
