"""Benchmark: the whole local system, 6 consumers, N keys at delay 0 / TTL 100 ms.

``--nats-cluster`` runs NATS as a 3-node JetStream cluster on this machine with the stream
replicated on every node in files (R3, file storage), as the HA deployment does.

Prints end-to-end keys/s, the spread between consumers, lost and duplicate keys (checked key
by key), CPU per process, and the delay from each key's TTL deadline to its consumption.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from shared import names
from shared.local_system import running_system


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile of sorted ``values``."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[index]


def main() -> int:
    """Run one benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--consumers", type=int, default=6)
    parser.add_argument("--delay", type=int, default=0)
    parser.add_argument("--ttl", type=int, default=100)
    parser.add_argument(
        "--nats-cluster",
        action="store_true",
        help="3-node NATS cluster, stream at 3 replicas in files (default: one server, memory)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        running_system(
            Path(tmp),
            consumers=args.consumers,
            env={"LOG_LEVEL": "WARNING"},
            nats_cluster=args.nats_cluster,
        ) as system,
    ):
        procs = {
            p.name: psutil.Process(p.popen.pid)
            for p in [*system.consumer_processes, system.generator]
            if p.popen is not None
        }
        assert system.redis is not None
        servers = [("redis", system.redis.process)]
        if system.cluster is not None:
            servers += [(node.name, node.process) for node in system.cluster.nodes]
        else:
            assert system.nats is not None
            servers.append(("nats", system.nats.process))
        for name, proc in servers:
            assert proc.popen is not None
            procs[name] = psutil.Process(proc.popen.pid)
        before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        started = time.monotonic()
        system.start_test(num_keys=args.keys, key_delay=args.delay, key_ttl=args.ttl)
        status = system.wait_test_end(timeout=max(120, args.keys / 500))
        wall = time.monotonic() - started
        cpu = {name: sum(p.cpu_times()[:2]) - before[name] for name, p in procs.items()}
        client = redis.Redis.from_url(system.redis_url or "", decode_responses=True)
        records = client.hgetall(names.TEST_CONSUMED)
        consumed_counter = int(client.get(names.METRICS_CONSUMED) or 0)
    expected = {names.gen_key(i) for i in range(status["generated"])}
    lost = len(expected - records.keys())
    foreign = len(records.keys() - expected)
    duplicates = consumed_counter - len(records)
    delays = sorted(float(v.split()[1]) for v in records.values())
    # Elapsed from start to the last consumption, as the generator measured it.
    elapsed = status["elapsed_s"] or wall
    counts = sorted(status["consumers"].values())
    print(f"keys            {args.keys:,} (delay {args.delay} ms, TTL {args.ttl} ms)")
    print(f"consumers       {args.consumers}")
    nats = "3-node cluster, stream R3 in files" if args.nats_cluster else "1 server, memory"
    print(f"nats            {nats}")
    print(f"verdict         {status['verdict']}")
    print(f"end-to-end      {status['generated'] / elapsed:,.0f} keys/s ({elapsed:.2f} s)")
    print(f"lost            {lost}")
    print(f"duplicates      {duplicates}")
    print(f"unexpected      {foreign}")
    print(f"recovered       {status['recovered']} (claimed by the sweeper, not by an event)")
    print(
        f"spread          min {counts[0]:,} / max {counts[-1]:,} / "
        f"stdev {statistics.pstdev(counts):,.0f} keys per consumer"
    )
    print(
        "delay (ms)      "
        f"p50 {percentile(delays, 50):,.0f}  p95 {percentile(delays, 95):,.0f}  "
        f"p99 {percentile(delays, 99):,.0f}  max {delays[-1] if delays else 0:,.0f}"
    )
    print("cpu seconds     " + "  ".join(f"{n} {c:.1f}" for n, c in sorted(cpu.items())))
    consumer_cpu = [c for n, c in cpu.items() if n.startswith("consumer-")]
    per_key = sum(consumer_cpu) / max(1, status["generated"]) * 1e6
    print(
        f"consumer cpu    {statistics.mean(consumer_cpu):.1f} s each on average; "
        f"{per_key:.0f} µs per key for the fleet"
    )
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
