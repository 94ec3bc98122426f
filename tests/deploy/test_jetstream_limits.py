"""JetStream's memory and file limits are set explicitly and fit the NATS container, in
docker-compose.yml, k8s/ and the HA overlay: a big backlog is refused by NATS ("insufficient
resources") instead of the server being OOM-killed or filling its disk. Without them JetStream
takes 75% of the machine's memory and disk, whatever the container may use."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .manifests import REPO, Manifest, configmap_data, container, find
from .test_local_run import free_port, nats_server

#: Bytes of Go heap a byte of memory store may cost: measured about 3.5 with the pipeline's
#: small messages (a key, a message id and a claim header), duplicate detection included.
HEAP_PER_STORED_BYTE = 4
#: Room left on the data volume beyond the file store (JetStream's metadata, index files).
DISK_HEADROOM = 0.1


def size(value: str) -> int:
    """Bytes of a size as NATS (64MB), Kubernetes (512Mi), Docker (512M) or Go (450MiB) write
    it; all of these units are powers of 1024."""
    match = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i|iB|B)?", str(value).strip(), re.IGNORECASE)
    assert match, f"not a size: {value!r}"
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")


def jetstream_limits(conf: str) -> dict[str, str]:
    """``max_memory_store`` and ``max_file_store`` of a nats-server configuration."""
    return dict(re.findall(r"\b(max_memory_store|max_file_store)\s*[:=]\s*(\S+)", conf))


@dataclass
class Nats:
    """What bounds one NATS server: its configuration and its container's limits."""

    conf: str
    memory_limit: int
    gomemlimit: int
    disk_limit: int | None


def _kubernetes(objects: list[Manifest], kind: str) -> Nats:
    workload = find(objects, kind, "nats")
    c = container(workload)
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    spec = workload["spec"]
    data_mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/data")
    volumes = {v["name"]: v for v in spec["template"]["spec"].get("volumes", [])}
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
    if data_mount["name"] in claims:
        disk = claims[data_mount["name"]]["spec"]["resources"]["requests"]["storage"]
    else:
        disk = volumes[data_mount["name"]]["emptyDir"]["sizeLimit"]
    return Nats(
        conf=configmap_data(objects, "nats-config")["nats-server.conf"],
        memory_limit=size(c["resources"]["limits"]["memory"]),
        gomemlimit=size(env["GOMEMLIMIT"]),
        disk_limit=size(disk),
    )


def _compose() -> Nats:
    services: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    nats = services["nats"]
    argv = nats["command"]
    conf_path = argv[argv.index("-c") + 1]
    sources = {}
    for volume in nats["volumes"]:
        source, target = volume.split(":")[:2]
        sources[target] = source
    source = sources[conf_path]
    return Nats(
        conf=(REPO / source).read_text(),
        memory_limit=size(nats["deploy"]["resources"]["limits"]["memory"]),
        gomemlimit=size(nats["environment"]["GOMEMLIMIT"]),
        # /data is in the container's own layer, which Compose does not limit.
        disk_limit=None,
    )


@pytest.fixture(params=["compose", "k8s", "ha"])
def nats(request: pytest.FixtureRequest) -> Nats:
    if request.param == "compose":
        return _compose()
    if request.param == "k8s":
        return _kubernetes(request.getfixturevalue("base"), "Deployment")
    return _kubernetes(request.getfixturevalue("ha"), "StatefulSet")


def test_limits_are_explicit_and_fit_the_container(nats: Nats) -> None:
    limits = jetstream_limits(nats.conf)
    assert set(limits) == {"max_memory_store", "max_file_store"}, nats.conf
    assert nats.gomemlimit < nats.memory_limit, "GOMEMLIMIT keeps the heap under the limit"
    memory_store = size(limits["max_memory_store"])
    assert memory_store * HEAP_PER_STORED_BYTE <= nats.gomemlimit, (
        f"max_memory_store {limits['max_memory_store']} may need "
        f"{memory_store * HEAP_PER_STORED_BYTE >> 20}MiB of heap: more than GOMEMLIMIT"
    )
    if nats.disk_limit is not None:
        file_store = size(limits["max_file_store"])
        assert file_store <= nats.disk_limit * (1 - DISK_HEADROOM), (
            f"max_file_store {limits['max_file_store']} leaves too little of the "
            f"{nats.disk_limit >> 20}MiB data volume"
        )


def test_compose_has_the_limits_of_the_kubernetes_manifests(base: list[Manifest]) -> None:
    compose, k8s = _compose(), _kubernetes(base, "Deployment")
    assert jetstream_limits(compose.conf) == jetstream_limits(k8s.conf)
    assert (compose.memory_limit, compose.gomemlimit) == (k8s.memory_limit, k8s.gomemlimit)


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_nats_server_reads_the_limits(where: str, base: list[Manifest], tmp_path: Path) -> None:
    conf = _compose().conf if where == "compose" else _kubernetes(base, "Deployment").conf
    (tmp_path / "nats-server.conf").write_text(conf)
    monitor = free_port()
    argv = [nats_server(), "-js", "-a", "127.0.0.1", "-p", str(free_port())]
    argv += [
        "-m",
        str(monitor),
        "-sd",
        str(tmp_path / "data"),
        "-c",
        str(tmp_path / "nats-server.conf"),
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                config = httpx.get(f"http://127.0.0.1:{monitor}/jsz", timeout=2).json()["config"]
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "nats-server did not answer on /jsz"
                time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(10)
    limits = jetstream_limits(conf)
    assert config["max_memory"] == size(limits["max_memory_store"])
    assert config["max_storage"] == size(limits["max_file_store"])
