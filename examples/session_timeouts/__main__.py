"""Run the session time-out example against running Redis and NATS servers.

    python -m examples.session_timeouts [--sessions 500] [--consumers 2]

It starts its own small fleet (``FLEET=sessions``: a work queue of its own, so it runs beside
the load test's consumers), keys ``session:*``, handler ``audit``; opens sessions with a TTL of
1-3 s, half of them registered (``FCALL expiry_register``), half written with plain ``SET … PX``
as any application would; waits until every session has its audit record; and says whether
each timed out exactly once. Redis and NATS come from REDIS_URL / NATS_URL, or from the file
``make up`` writes (.local/servers.env).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import redis

from examples.session_timeouts.handler import AUDIT_KEY
from shared import names

ROOT = Path(__file__).resolve().parents[2]
SERVERS_ENV = ROOT / ".local" / "servers.env"


def servers() -> tuple[str, str]:
    """REDIS_URL and NATS_URL: from the environment, else from what ``make up`` wrote."""
    found = {k: os.environ[k] for k in ("REDIS_URL", "NATS_URL") if os.environ.get(k)}
    if len(found) < 2 and SERVERS_ENV.exists():
        for line in SERVERS_ENV.read_text().splitlines():
            name, _, value = line.partition("=")
            found.setdefault(name.strip(), value.strip())
    if "REDIS_URL" not in found or "NATS_URL" not in found:
        raise SystemExit(
            "no servers: run `make up` in another terminal first, or set REDIS_URL and NATS_URL"
        )
    return found["REDIS_URL"], found["NATS_URL"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_fleet(
    redis_url: str, nats_url: str, count: int, logs: Path
) -> list[tuple[subprocess.Popen[bytes], int]]:
    """Start ``count`` consumers of the ``sessions`` fleet; each with its health port."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        NATS_URL=nats_url,
        FLEET="sessions",
        KEY_PATTERNS="session:*",
        HANDLER="examples.session_timeouts.handler:audit",
        HEALTH_HOST="127.0.0.1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]),
    )
    logs.mkdir(parents=True, exist_ok=True)
    fleet = []
    for index in range(count):
        port = free_port()
        env["CONSUMER_ID"] = f"sessions-{index}-{os.getpid()}"
        env["HEALTH_PORT"] = str(port)
        log = (logs / f"sessions-consumer-{index}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "consumer"], env=env, stdout=log, stderr=log
        )
        fleet.append((process, port))
    return fleet


def wait_ready(fleet: list[tuple[subprocess.Popen[bytes], int]], timeout: float = 30) -> None:
    """Wait until every consumer of the fleet answers ready (its listeners subscribed)."""
    end = time.monotonic() + timeout
    waiting = list(fleet)
    while waiting and time.monotonic() < end:
        process, port = waiting[0]
        if process.poll() is not None:
            raise SystemExit("a consumer of the sessions fleet exited; see .local/example-logs/")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if json.loads(reply.read())["ready"]:
                    waiting.pop(0)
                    continue
        except OSError:
            pass
        time.sleep(0.1)
    if waiting:
        raise SystemExit("the sessions fleet did not get ready; see .local/example-logs/")


def open_sessions(client: redis.Redis, count: int, cluster: bool) -> list[str]:
    """Open ``count`` sessions with a TTL of 1-3 s: half registered, half plain SET.

    The consumers loaded the ``expiry_register`` functions into Redis when they started. On a
    Redis Cluster a key and the registry live in different slots: a registered session is
    registered first (``expiry_register_due``, in its slot group's registry), then written.
    """
    keys = []
    layout = names.cluster_layout() if cluster else names.SINGLE_SERVER
    registering = client.pipeline(transaction=False)
    writing = client.pipeline(transaction=False)
    for index in range(count):
        key = f"session:{os.getpid()}-{index}"
        ttl = random.randint(1000, 3000)
        if index % 2 and not cluster:
            writing.fcall("expiry_register", 2, key, names.EXPIRY_DUE, f"user-{index}", ttl)
        else:
            if index % 2:
                registry = layout.group_of(key).name(names.EXPIRY_DUE)
                registering.fcall(names.FN_REGISTER_DUE, 1, registry, ttl, key)
            writing.set(key, f"user-{index}", px=ttl)
        keys.append(key)
    registering.execute()
    writing.execute()
    return keys


def main() -> int:
    """Run the example; exit 0 when every session timed out exactly once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    redis_url, nats_url = servers()
    cluster = redis_url.startswith(("redis+cluster://", "rediss+cluster://"))
    client: redis.Redis = (
        cast(
            redis.Redis,
            redis.RedisCluster.from_url(
                redis_url.replace("+cluster", "", 1), decode_responses=True
            ),
        )
        if cluster
        else redis.Redis.from_url(redis_url, decode_responses=True)
    )
    fleet = start_fleet(redis_url, nats_url, args.consumers, ROOT / ".local" / "example-logs")
    try:
        wait_ready(fleet)
        keys = open_sessions(client, args.sessions, cluster)
        print(f"opened {len(keys)} sessions (half registered); waiting for them to time out")
        end = time.monotonic() + args.timeout
        records: list[Any] = []
        while time.monotonic() < end:
            records = client.hmget(AUDIT_KEY, keys)
            if all(records):
                break
            time.sleep(0.2)
        audited = [json.loads(r) for r in records if r]
        delays = sorted(r["handled_at_ms"] - r["deadline_ms"] for r in audited if r["deadline_ms"])
        missing = len(keys) - len(audited)
        print(f"audited {len(audited)} of {len(keys)} sessions; missing {missing}")
        if delays:
            print(f"registered sessions: deadline to audit p50 {delays[len(delays) // 2]} ms")
        once = not missing and len({r["claim_id"] for r in audited}) == len(keys)
        print("each timed out exactly once" if once else "NOT every session exactly once")
        return 0 if once else 1
    finally:
        for process, _ in fleet:
            process.send_signal(signal.SIGTERM)
        for process, _ in fleet:
            process.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
