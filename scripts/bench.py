"""Benchmark: the whole local system on this machine, every key checked.

``make bench`` prints, one run each:
- a consumer scaling table: 2, 6 and 12 consumers, 100,000 keys, delay 0, TTL 100 ms
  (end-to-end keys/s, lost, duplicates, delay percentiles, fleet CPU per key);
- a paced run: 10,000 keys at 1 ms, delay p50/p95/p99/max and CPU µs per key, next to the lag
  with which Redis announced the same expiries to a plain subscriber (the floor).

``--keys/--consumers/--delay`` run one configuration instead. ``--nats-cluster`` runs NATS as a
3-node JetStream cluster on this machine with the stream at three replicas in files, as the HA
deployment does; ``--redis-cluster`` runs Redis as a cluster of 3 masters with a replica each
(``make bench-ha``: 100,000 keys, 6 consumers, on each and on both).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dev.local_system import LocalSystem, running_system
from shared import names


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile of sorted ``values``."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[index]


class RedisLag:
    """A plain subscriber measuring when Redis announces each generated key's expiry.

    Deadlines are read from the registry (``expiry:due``) while keys wait there; the lag of a
    key is the arrival of its expired event minus its deadline.
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self.deadlines: dict[str, float] = {}
        self.arrivals: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    def start(self) -> RedisLag:
        for thread in self._threads:
            thread.start()
        time.sleep(0.2)
        return self

    def stop(self) -> list[float]:
        """Stop; the lags in ms, sorted."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        return sorted(self.arrivals[k] - d for k, d in self.deadlines.items() if k in self.arrivals)

    def _listen(self) -> None:
        pubsub = self._client.pubsub()
        pubsub.subscribe("__keyevent@0__:expired")
        while not self._stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                now = time.time() * 1000
                key = message["data"]
                if key.startswith(names.GEN_KEY_PREFIX):
                    self.arrivals.setdefault(key, now)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for key, score in self._client.zrange(names.EXPIRY_DUE, 0, -1, withscores=True):
                self.deadlines.setdefault(key, score)
            time.sleep(0.01)


@dataclass
class Run:
    """What one benchmark run measured."""

    keys: int
    consumers: int
    delay: int
    keys_per_s: float
    elapsed_s: float
    lost: int
    duplicates: int
    recovered: int
    delays_ms: list[float]
    cpu_s: dict[str, float]
    spread: list[int]
    redis_lag_ms: list[float]
    listeners: list[str]
    handled: dict[str, int]
    nats_cluster: bool = False
    redis_cluster: bool = False

    @property
    def fleet_us_per_key(self) -> float:
        fleet = sum(c for n, c in self.cpu_s.items() if n.startswith("consumer-"))
        return fleet / max(1, self.keys) * 1e6

    def us_per_key(self, name: str) -> float:
        """CPU per key of process ``name`` (``nats``: every NATS node together)."""
        cpu = sum(c for n, c in self.cpu_s.items() if n == name or n.startswith(f"{name}-"))
        return cpu / max(1, self.keys) * 1e6

    def stage_costs(self) -> str:
        """CPU per key of hearing + claiming + publishing (the listeners, beyond the work they
        also did) and of pulling + handling + completing (per key handled)."""
        workers = [n for n in self.handled if n not in self.listeners]
        if not workers or not self.listeners:
            return ""
        work_us = sum(self.cpu_s[n] for n in workers) / max(
            1, sum(self.handled[n] for n in workers)
        )
        listen_cpu = sum(self.cpu_s[n] - work_us * self.handled.get(n, 0) for n in self.listeners)
        return (
            f"per stage       listen+claim+publish {listen_cpu / self.keys * 1e6:,.0f} µs/key "
            f"({len(self.listeners)} listeners), pull+handle+complete+ack "
            f"{work_us * 1e6:,.0f} µs/key"
        )


def processes(system: LocalSystem) -> dict[str, psutil.Process]:
    procs = {
        p.name: psutil.Process(p.popen.pid)
        for p in [*system.consumer_processes, system.generator]
        if p is not None and p.popen is not None
    }
    servers: list[tuple[str, Any]] = []
    if system.redis_nodes is not None:
        servers += [(f"redis-{n.port}", n.process) for n in system.redis_nodes.nodes]
    else:
        assert system.redis is not None
        servers.append(("redis", system.redis.process))
    if system.cluster is not None:
        servers += [(node.name, node.process) for node in system.cluster.nodes]
    else:
        assert system.nats is not None
        servers.append(("nats", system.nats.process))
    for name, proc in servers:
        assert proc.popen is not None
        procs[name] = psutil.Process(proc.popen.pid)
    return procs


def run(
    keys: int,
    consumers: int,
    delay: int,
    ttl: int = 100,
    lag: bool = False,
    nats_cluster: bool = False,
    redis_cluster: bool = False,
    keyspace_events: str = "",
) -> Run:
    """One test on a fresh local system; every key checked. ``keyspace_events`` sets Redis's
    notify-keyspace-events instead of the system's own."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        running_system(
            Path(tmp),
            consumers=consumers,
            env={"LOG_LEVEL": "WARNING"},
            nats_cluster=nats_cluster,
            redis_cluster=redis_cluster,
            redis_args=("--notify-keyspace-events", keyspace_events) if keyspace_events else (),
        ) as system,
    ):
        procs = processes(system)
        probe = RedisLag(system.redis_url or "").start() if lag and not redis_cluster else None
        time.sleep(4)  # listener slots settle (a lease and a renewal)
        listeners = list(system.status()["listeners"])
        before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        started = time.monotonic()
        system.start_test(num_keys=keys, key_delay=delay, key_ttl=ttl)
        status = system.wait_test_end(timeout=max(120, keys / 500))
        wall = time.monotonic() - started
        cpu = {name: sum(p.cpu_times()[:2]) - before[name] for name, p in procs.items()}
        lags = probe.stop() if probe else []
        records, counted = consumption(system, redis_cluster)
    expected = {names.gen_key(i) for i in range(status["generated"])}
    elapsed = status["elapsed_s"] or wall
    return Run(
        keys=status["generated"],
        consumers=consumers,
        delay=delay,
        keys_per_s=status["generated"] / elapsed,
        elapsed_s=elapsed,
        lost=len(expected - records.keys()),
        duplicates=counted - len(records),
        recovered=status["recovered"],
        delays_ms=sorted(float(v.split()[1]) for v in records.values()),
        cpu_s=cpu,
        spread=sorted(status["consumers"].values()),
        redis_lag_ms=lags,
        nats_cluster=nats_cluster,
        redis_cluster=redis_cluster,
        listeners=listeners,
        handled=dict(status["consumers"]),
    )


def consumption(system: LocalSystem, redis_cluster: bool) -> tuple[dict[str, str], int]:
    """Every key's consumption record and the number of completions, over all slot groups."""
    url = system.redis_url or ""
    if redis_cluster:
        client: Any = redis.RedisCluster.from_url(
            url.replace("+cluster", ""), decode_responses=True
        )
        layout = names.cluster_layout()
    else:
        client = redis.Redis.from_url(url, decode_responses=True)
        layout = names.SINGLE_SERVER
    records: dict[str, str] = {}
    counted = 0
    for group in layout.groups:
        records.update(client.hgetall(group.name(names.TEST_CONSUMED)))
        counted += int(client.get(group.name(names.TEST_COUNTED)) or 0)
    return records, counted


def plain_keys(keys: int, consumers: int, keyspace_events: str = "") -> None:
    """Time ``keys`` keys written with plain ``SET … PX`` (a seed-style producer, no test
    running) until ``metrics:consumed`` has them all; the CPU each part spent per key."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as tmp,
        running_system(
            Path(tmp),
            consumers=consumers,
            env={"LOG_LEVEL": "WARNING"},
            redis_args=("--notify-keyspace-events", keyspace_events) if keyspace_events else (),
        ) as system,
    ):
        client = redis.Redis.from_url(system.redis_url or "", decode_responses=True)
        procs = processes(system)
        time.sleep(4)  # listener slots settle
        before = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        client.set(names.METRICS_CONSUMED, 0)
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for i in range(keys):
            pipe.set(f"gen-key:{i}", i, px=100)
            pipe.incr(names.METRICS_GENERATED)
            if i % 500 == 499:
                pipe.execute()
        pipe.execute()
        written = time.monotonic() - started
        while int(client.get(names.METRICS_CONSUMED) or 0) < keys:
            if time.monotonic() - started > 120:
                break
            time.sleep(0.01)
        done = time.monotonic() - started
        consumed = int(client.get(names.METRICS_CONSUMED) or 0)
        time.sleep(1)
        late = int(client.get(names.METRICS_CONSUMED) or 0) - consumed
        cpu = {name: sum(p.cpu_times()[:2]) - before[name] for name, p in procs.items()}
    fleet = sum(c for n, c in cpu.items() if n.startswith("consumer-"))
    print(
        f"plain SET keys  {keys:,} written in {written:.2f} s, all {consumed:,} consumed after "
        f"{done:.2f} s ({keys / done:,.0f} keys/s); {late} counted after that (must be 0)"
    )
    print(
        f"cpu per key     fleet {fleet / keys * 1e6:,.0f} µs, Redis "
        f"{cpu['redis'] / keys * 1e6:,.0f} µs, NATS {cpu['nats'] / keys * 1e6:,.0f} µs"
    )


def quantiles(values: list[float]) -> str:
    return (
        " / ".join(f"{percentile(values, p):,.0f}" for p in (50, 95, 99))
        + f" / {values[-1] if values else 0:,.0f}"
    )


def print_run(r: Run) -> None:
    print(f"keys            {r.keys:,} (delay {r.delay} ms, TTL 100 ms), {r.consumers} consumers")
    nats = "3-node cluster, stream R3 in files" if r.nats_cluster else "1 server, memory"
    print(f"NATS            {nats}")
    redis_kind = "cluster of 3 masters + 3 replicas" if r.redis_cluster else "1 server"
    print(f"Redis           {redis_kind}")
    print(f"end-to-end      {r.keys_per_s:,.0f} keys/s ({r.elapsed_s:.2f} s)")
    print(f"lost            {r.lost}   duplicates {r.duplicates}   recovered {r.recovered}")
    if r.spread:
        print(
            f"spread          min {r.spread[0]:,} / max {r.spread[-1]:,} / "
            f"stdev {statistics.pstdev(r.spread):,.0f} keys per consumer"
        )
    print(f"delay (ms)      p50 / p95 / p99 / max: {quantiles(r.delays_ms)}")
    if r.redis_lag_ms:
        print(f"Redis lag (ms)  p50 / p95 / p99 / max: {quantiles(r.redis_lag_ms)}")
    print("cpu seconds     " + "  ".join(f"{n} {c:.1f}" for n, c in sorted(r.cpu_s.items())))
    if r.stage_costs():
        print(r.stage_costs())
    print(
        f"cpu per key     fleet {r.fleet_us_per_key:,.0f} µs, generator "
        f"{r.us_per_key('generator'):,.0f} µs, Redis {r.us_per_key('redis'):,.0f} µs, "
        f"NATS {r.us_per_key('nats'):,.0f} µs"
    )


def table(runs: list[Run]) -> None:
    print()
    print("| run | keys/s | lost | dup | delay p50 / p95 / p99 / max (ms) | fleet CPU/key |")
    print("|---|---:|---:|---:|---|---:|")
    for r in runs:
        what = f"{r.keys:,} keys, delay {r.delay} ms, {r.consumers} consumers"
        if r.nats_cluster:
            what += ", 3-node NATS cluster (R3, file)"
        if r.redis_cluster:
            what += ", Redis Cluster (3 masters + 3 replicas)"
        print(
            f"| {what} | {r.keys_per_s:,.0f} | {r.lost} | {r.duplicates} | "
            f"{quantiles(r.delays_ms)} | {r.fleet_us_per_key:,.0f} µs |"
        )
    for r in runs:
        if r.redis_lag_ms:
            print(
                f"| Redis's own lag, same {r.keys:,}-key run (plain subscriber) | | | | "
                f"{quantiles(r.redis_lag_ms)} | |"
            )


def main() -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int)
    parser.add_argument("--consumers", type=int, default=6)
    parser.add_argument("--delay", type=int, default=0)
    parser.add_argument("--ttl", type=int, default=100)
    parser.add_argument(
        "--plain", type=int, metavar="N", help="time N keys written with plain SET … PX instead"
    )
    parser.add_argument(
        "--nats-cluster",
        action="store_true",
        help="3-node NATS cluster, stream at 3 replicas in files (default: one server, memory)",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="Redis Cluster of 3 masters with a replica each (default: one server)",
    )
    parser.add_argument(
        "--keyspace-events",
        default="",
        metavar="FLAGS",
        help="Redis's notify-keyspace-events for the runs (default: the system's own, KEgx); "
        "KEx measures what learning deadlines from Redis costs",
    )
    args = parser.parse_args()
    if args.plain:
        plain_keys(args.plain, args.consumers, args.keyspace_events)
        return 0
    plan: list[dict[str, Any]]
    if args.keys:
        plan = [dict(keys=args.keys, consumers=args.consumers, delay=args.delay, ttl=args.ttl)]
    else:
        plan = [
            dict(keys=100_000, consumers=2, delay=0),
            dict(keys=100_000, consumers=6, delay=0),
            dict(keys=100_000, consumers=12, delay=0),
            dict(keys=10_000, consumers=6, delay=1, lag=True),
        ]
    runs = []
    for step in plan:
        result = run(
            **step,
            nats_cluster=args.nats_cluster,
            redis_cluster=args.redis_cluster,
            keyspace_events=args.keyspace_events,
        )
        print_run(result)
        print()
        runs.append(result)
    table(runs)
    return 0 if all(r.lost == 0 and r.duplicates == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
