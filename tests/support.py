"""Checks shared by the end-to-end and fault tests: exactly once, key by key, and recovery."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
import trustme

from dev.local_system import LocalSystem, Process, free_port, service_env, wait_until
from shared import names

REPO = Path(__file__).resolve().parents[1]
#: One JSON line per measured run; ``scripts/fault_table.py`` turns it into a table.
FAULTS_JSONL = REPO / "test-output" / "faults.jsonl"

POLL_S = 0.05


def redis_client(system: LocalSystem) -> redis.Redis:
    """A plain (synchronous) client of the system's Redis (or Redis Cluster), replies decoded."""
    assert system.redis_url
    if system.redis_url.startswith("redis+cluster://"):
        url = system.redis_url.replace("+cluster", "", 1)
        cluster: Any = redis.RedisCluster.from_url(url, decode_responses=True)
        return cast(redis.Redis, cluster)
    return redis.Redis.from_url(system.redis_url, decode_responses=True)


def layout_of(system: LocalSystem) -> names.KeyLayout:
    """Where the system's pipeline state lives (slot groups on a cluster)."""
    assert system.redis_url
    if system.redis_url.startswith("redis+cluster://"):
        return names.cluster_layout()
    return names.SINGLE_SERVER


def consumption_records(
    client: redis.Redis, layout: names.KeyLayout, keys: list[str]
) -> list[str | None]:
    """Each key's record in its slot group's ``test:consumed`` (None: not consumed)."""
    found: dict[str, str | None] = {}
    for group, part in layout.by_group(keys).items():
        found.update(zip(part, client.hmget(group.name(names.TEST_CONSUMED), part), strict=True))
    return [found[key] for key in keys]


@dataclass(frozen=True)
class Tally:
    """What Redis holds about a test's keys once it has ended."""

    generated: int
    records: int
    lost: int
    unexpected: int
    duplicates: int
    pending: int
    inflight: int


def tally(system: LocalSystem) -> Tally:
    """Count, key by key, what was lost, counted twice or consumed without being generated."""
    client = redis_client(system)
    groups = layout_of(system).groups
    generated = int(client.get(names.METRICS_GENERATED) or 0)
    consumed_count = sum(int(client.get(g.name(names.TEST_COUNTED)) or 0) for g in groups)
    records: set[str] = set()
    for group in groups:
        part = client.hkeys(group.name(names.TEST_CONSUMED))
        assert not records & set(part), "a key recorded in two slot groups"
        records.update(part)
    expected = {names.gen_key(i) for i in range(generated)}
    return Tally(
        generated=generated,
        records=len(records),
        lost=len(expected - records),
        unexpected=len(records - expected),
        duplicates=consumed_count - len(records),
        pending=sum(int(client.zcard(g.name(names.EXPIRY_DUE))) for g in groups),
        inflight=sum(int(client.zcard(g.name(names.EXPIRY_LEASES))) for g in groups),
    )


def leases_left(system: LocalSystem, shown: int = 5) -> list[str]:
    """A few of the leases still held (claim id|deadline|test id|key), to say whose they are."""
    client = redis_client(system)
    held: list[str] = []
    for group in layout_of(system).groups:
        held += client.zrange(group.name(names.EXPIRY_LEASES), 0, shown - 1)
    return held[:shown]


def check_every_key(system: LocalSystem, status: dict[str, Any]) -> None:
    """The ended test consumed every generated key exactly once, and Redis agrees with the API.

    Every key 0..generated-1 has one record in ``test:consumed`` (a hash: one field per key) and
    nothing else has one; ``metrics:consumed`` equals the number of keys; nothing is left
    pending or in flight.
    """
    logs = system.logs()
    counts = tally(system)
    assert counts.generated > 0
    assert status["generated"] == status["consumed"] == counts.generated, logs
    assert counts.lost == 0, f"{counts}\n{logs}"
    assert counts.unexpected == 0, f"{counts}\n{logs}"
    assert counts.duplicates == 0, f"{counts}\n{logs}"
    assert counts.records == counts.generated
    assert counts.pending == 0 and counts.inflight == 0, (counts, leases_left(system))
    verdict = status["verdict"]
    assert verdict is not None, status
    assert verdict["exactly_once"] is True, verdict
    assert verdict["expected"] == verdict["consumed"] == counts.generated, verdict
    assert verdict["missing"] == 0 and verdict["duplicates"] == 0, verdict


def jetstream_consumer(monitor_port: int) -> dict[str, Any]:
    """The durable consumer's state from the NATS monitoring endpoint (with its stream's)."""
    url = f"http://127.0.0.1:{monitor_port}/jsz?consumers=true"
    with urllib.request.urlopen(url, timeout=5) as response:
        document = json.loads(response.read())
    for account in document.get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] != names.STREAM:
                continue
            for consumer in stream.get("consumer_detail", []):
                if consumer["name"] == names.DURABLE:
                    return {**consumer, "stream_messages": stream["state"]["messages"]}
    raise AssertionError(f"no JetStream consumer {names.DURABLE} in {document}")


def check_jetstream_settled(
    system: LocalSystem, monitor_port: int | None = None, timeout: float = 20
) -> dict[str, Any]:
    """Wait until the work queue holds nothing: no message waiting, none delivered and unacked.

    Acknowledgements go out just after counting, so they may trail the verdict a little.
    ``monitor_port`` is the NATS monitoring port (default: that of the system's own NATS, or
    of the stream's leader in a cluster, asked again on every check).
    """

    def port() -> int:
        return monitor_port or system.nats_monitor_port(names.STREAM)

    def settled() -> dict[str, Any] | None:
        consumer = jetstream_consumer(port())
        idle = consumer["num_pending"] == consumer["num_ack_pending"] == 0
        return consumer if idle and consumer["stream_messages"] == 0 else None

    try:
        return dict(wait_until(settled, timeout, "an empty JetStream work queue", interval=0.2))
    except TimeoutError:
        raise AssertionError(
            f"JetStream still holds work: {jetstream_consumer(port())}\n{system.logs()}"
        ) from None


def wait_generated(system: LocalSystem, at_least: int, timeout: float = 30) -> int:
    """Wait until the generator has written ``at_least`` keys; return how many it has."""
    client = redis_client(system)

    def enough() -> int | None:
        count = int(client.get(names.METRICS_GENERATED) or 0)
        return count if count >= at_least else None

    return int(wait_until(enough, timeout, f"{at_least} keys generated", interval=0.02))


@dataclass
class RecoveryWatch:
    """Times how long, once a fault is over, the keys written until then take to be consumed.

    ``start_clock()`` notes the moment the fault begins; ``watch_keys()``, called once it is
    over (the process killed, the server or the consumers back, the frozen consumer resumed),
    notes that moment and the keys written so far (0..n-1), and starts a thread polling
    ``test:consumed`` for them. Recovery time: from the end of the fault until the last of those
    keys has its consumption record. Without a fault this is the normal delay of the newest keys
    (their TTL plus the pipeline): the baseline to read the others against.
    """

    system: LocalSystem
    fault_at: float | None = None
    fault_wall_clock: float | None = None
    over_at: float | None = None
    keys_at_fault: int = 0
    recovered_at: float | None = None
    _missing: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start_clock(self) -> None:
        """The fault begins now."""
        self.fault_at = time.monotonic()
        self.fault_wall_clock = time.time()

    def watch_keys(self) -> int:
        """The fault is over: watch every key written so far; return how many that is."""
        assert self.fault_at is not None, "start_clock() first"
        self.over_at = time.monotonic()
        keys_written = int(redis_client(self.system).get(names.METRICS_GENERATED) or 0)
        self.keys_at_fault = keys_written
        self._missing = [names.gen_key(i) for i in range(keys_written)]
        self._thread = threading.Thread(target=self._poll, name="recovery-watch", daemon=True)
        self._thread.start()
        return keys_written

    @property
    def fault_seconds(self) -> float | None:
        """How long the fault lasted (0 for an instant one)."""
        if self.fault_at is None or self.over_at is None:
            return None
        return round(self.over_at - self.fault_at, 2)

    def _poll(self) -> None:
        client = redis_client(self.system)
        layout = layout_of(self.system)
        while self._missing and not self._stop.is_set():
            try:
                found = consumption_records(client, layout, self._missing)
            except redis.RedisError:
                # A fault may drop this connection too; the next poll reconnects.
                time.sleep(POLL_S)
                continue
            self._missing = [k for k, v in zip(self._missing, found, strict=True) if v is None]
            if self._missing:
                time.sleep(POLL_S)
        if not self._missing:
            self.recovered_at = time.monotonic()

    def seconds(self, timeout: float = 5) -> float | None:
        """The recovery time, or None when the watched keys were never all consumed."""
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop.set()
        if self.over_at is None or self.recovered_at is None:
            return None
        return round(self.recovered_at - self.over_at, 2)


@dataclass(frozen=True)
class FaultRow:
    """One measured run, as a JSON line of ``test-output/faults.jsonl``."""

    fault: str
    #: Keys generated (the verdict's ``expected``).
    keys: int
    #: Generated keys without a consumption record.
    lost: int
    #: Counts beyond one per key (``metrics:consumed`` minus the records).
    duplicates: int
    #: Keys claimed by a sweeper (``metrics:recovered``, the status's ``recovered``).
    recovered: int
    #: Deliveries refused as already counted (the status's ``redelivered``).
    redelivered: int
    dead_letters: int
    #: From the end of the fault until every key written by then was consumed.
    recovery_s: float | None
    #: How long the fault lasted.
    fault_s: float | None
    #: From the start of the fault to the verdict (the generator's ``finished_at``).
    end_after_fault_s: float | None
    keys_at_fault: int
    consumers: int
    state: str
    exactly_once: bool
    test_id: str
    measured_at: str


def record_run(
    fault: str, system: LocalSystem, status: dict[str, Any], watch: RecoveryWatch
) -> FaultRow:
    """Measure the ended run and append it to ``test-output/faults.jsonl`` (before any check,
    so a failing run is measured too)."""
    counts = tally(system)
    finished_at = status.get("finished_at")
    end_after_fault = None
    if finished_at is not None and watch.fault_wall_clock is not None:
        end_after_fault = round(float(finished_at) - watch.fault_wall_clock, 2)
    row = FaultRow(
        fault=fault,
        keys=counts.generated,
        lost=counts.lost,
        duplicates=counts.duplicates,
        recovered=int(status.get("recovered") or 0),
        redelivered=int(status.get("redelivered") or 0),
        dead_letters=int(status.get("dead_letters") or 0),
        recovery_s=watch.seconds(),
        fault_s=watch.fault_seconds,
        end_after_fault_s=end_after_fault,
        keys_at_fault=watch.keys_at_fault,
        consumers=len(system.consumer_processes),
        state=str(status.get("state")),
        exactly_once=bool((status.get("verdict") or {}).get("exactly_once")),
        test_id=str(status.get("test_id")),
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    FAULTS_JSONL.parent.mkdir(parents=True, exist_ok=True)
    with FAULTS_JSONL.open("a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(row)) + "\n")
    return row


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def prometheus_value(text: str, name: str, **labels: str) -> float:
    """The value of sample ``name{labels}`` in Prometheus text ``text`` (0 when absent)."""
    wanted = {f'{k}="{v}"' for k, v in labels.items()}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != name:
            continue
        have = set(filter(None, (match["labels"] or "").split(",")))
        if have == wanted:
            return float(match["value"])
    return 0.0


def consumer_metrics(system: LocalSystem, index: int) -> str:
    """The Prometheus text of consumer ``index``."""
    url = f"http://127.0.0.1:{system.health_ports[index]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def logs_under(folder: Path) -> dict[str, str]:
    """Every ``*.log`` file under ``folder`` (services and servers), by path."""
    return {
        str(path.relative_to(folder)): path.read_text(errors="replace")
        for path in sorted(folder.rglob("*.log"))
    }


def start_consumer(folder: Path, name: str = "solo", **env: str) -> tuple[Process, int]:
    """Start one consumer process named ``name`` with ``env`` (``REDIS_URL``, ``NATS_URL``, …)
    on a health port of its own; return it and that port."""
    port = free_port()
    process = Process(
        name,
        [sys.executable, "-m", "consumer"],
        folder / f"{name}.log",
        env=service_env(
            {"CONSUMER_ID": name, "HEALTH_PORT": str(port), "HEALTH_HOST": "127.0.0.1", **env}
        ),
    )
    process.start()
    return process, port


def redis_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1/localhost, its key and the CA that signed it (trustme),
    written under ``folder``: what ``RedisServer(tls=...)`` serves."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = (folder / "redis.crt", folder / "redis.key", folder / "redis-ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(files[0]))
    cert.private_key_pem.write_to_path(str(files[1]))
    ca.cert_pem.write_to_path(str(files[2]))
    return files
