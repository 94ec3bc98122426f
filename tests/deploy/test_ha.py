"""The high-availability overlay (kubectl kustomize k8s/overlays/ha): NATS as a 3-node
JetStream cluster, checked object by object, then run locally from the manifests: three
nats-servers from the overlay's own configuration (TLS, an account's credentials, routes), and
the generator and two consumers with the overlay's commands, environment and mounted Secrets."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trustme

from tests.nats_auth import Account

from .k8s_schema import validate_documents
from .manifests import (
    NAMESPACE,
    Manifest,
    config_variables,
    configmap_data,
    container,
    find,
    of_kind,
)
from .test_local_run import (
    Fleet,
    free_port,
    http_ok,
    nats_server,
    redis_answers,
    run_the_manifests,
    wait_until,
)
from .test_manifests import RECOMMENDED_LABELS
from .test_schemas import no_network  # noqa: F401 - a fixture

CONTAINER_PORTS = {"client": 4222, "cluster": 6222, "monitor": 8222}


def nats_set(ha: list[Manifest]) -> Manifest:
    return find(ha, "StatefulSet", "nats")


def test_nats_is_a_statefulset_of_three_instead_of_the_single_deployment(
    ha: list[Manifest],
) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in ha}
    assert ("Deployment", "nats") not in kinds
    assert {
        ("StatefulSet", "nats"),
        ("Service", "nats"),
        ("Service", "nats-headless"),
        ("PodDisruptionBudget", "nats"),
        ("NetworkPolicy", "nats-clients"),
        ("ConfigMap", "nats-config"),
    } <= kinds
    assert not of_kind(ha, "Secret"), "no secret values in the repository"
    for obj in ha:
        labels = obj["metadata"].get("labels", {})
        assert all(k in labels for k in RECOMMENDED_LABELS), obj["metadata"]["name"]
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE


@pytest.mark.usefixtures("no_network")
def test_ha_overlay_validates_strictly_offline(ha: list[Manifest]) -> None:
    count, errors = validate_documents(ha)
    assert errors == []
    assert count == len(ha) > 0


def test_each_node_has_its_own_volume_name_and_kubernetes_node(ha: list[Manifest]) -> None:
    spec = nats_set(ha)["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    headless = find(ha, "Service", spec["serviceName"])["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    pod_labels = spec["template"]["metadata"]["labels"]
    assert headless["selector"].items() <= pod_labels.items()
    [claim] = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container(nats_set(ha))["volumeMounts"]}
    config = configmap_data(ha, "nats-config")["nats-server.conf"]
    assert f"store_dir: {mounts[claim['metadata']['name']]}" in config
    [rule] = spec["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert rule["topologyKey"] == "kubernetes.io/hostname"
    assert rule["labelSelector"]["matchLabels"].items() <= pod_labels.items()
    budget = find(ha, "PodDisruptionBudget", "nats")["spec"]
    assert budget["maxUnavailable"] == 1  # two of three keep the quorum
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()


def test_nats_pods_run_unprivileged_on_a_read_only_root(ha: list[Manifest]) -> None:
    pod = nats_set(ha)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    security = container(nats_set(ha))["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_routes_and_clients_name_every_node(ha: list[Manifest]) -> None:
    spec = nats_set(ha)["spec"]
    pods = [f"nats-{i}.{spec['serviceName']}" for i in range(spec["replicas"])]
    config = configmap_data(ha, "nats-config")["nats-server.conf"]
    assert re.findall(r"nats-route://([\w.-]+):6222", config) == pods
    shared = configmap_data(ha, "pipeline-config")
    servers = [urlsplit(url) for url in shared["NATS_URL"].split(",")]
    assert [s.hostname for s in servers] == pods
    assert {s.scheme for s in servers} == {"tls"} and {s.port for s in servers} == {4222}
    consumer = configmap_data(ha, "consumer-config")
    assert consumer["STREAM_REPLICAS"] == str(spec["replicas"])
    assert consumer["STREAM_STORAGE"] == "file"


def test_config_maps_hold_only_variables_the_services_read(ha: list[Manifest]) -> None:
    known = config_variables()
    for name, allowed in (
        ("pipeline-config", known["common"]),
        ("consumer-config", known["consumer"]),
    ):
        unknown = set(configmap_data(ha, name)) - allowed
        assert not unknown, f"ConfigMap {name} sets {unknown}; src/shared/config.py reads none"


def secret_files(ha: list[Manifest], deployment: Manifest) -> dict[str, tuple[str, str]]:
    """File path -> (Secret, key) for every file a Secret volume puts into the container."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = {}
    for mount in container(deployment)["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret:
            for item in secret["items"]:
                path = f"{mount['mountPath']}/{item['path']}"
                files[path] = (secret["secretName"], item["key"])
    return files


@pytest.mark.parametrize("name", ["generator", "consumer"])
def test_services_get_the_ca_and_credentials_from_secrets(ha: list[Manifest], name: str) -> None:
    files = secret_files(ha, find(ha, "Deployment", name))
    shared = configmap_data(ha, "pipeline-config")
    assert files[shared["NATS_CA_FILE"]] == ("nats-client-tls", "ca.crt")
    assert files[shared["NATS_CREDS"]] == ("nats-creds", "user.creds")


# --- the local run --------------------------------------------------------------------------


def local_path(value: str, mounts: dict[str, Path]) -> str:
    """Every mount path in ``value`` replaced by the local folder standing in for it."""
    paths = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
    pattern = r"(?<![\w/-])(" + paths + r")(?=[/\s\"]|$)"
    return re.sub(pattern, lambda m: str(mounts[m.group(1)]), value, flags=re.MULTILINE)


def write_secrets(folder: Path) -> tuple[dict[str, dict[str, str]], Account]:
    """The Secrets the overlay mounts, made here: a CA and the servers' certificate, an
    operator with the pipeline's account, and a user's credentials."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "nats-headless", "*.nats-headless")
    account = Account.new()
    creds = account.user_creds(folder / "user.creds").read_text()
    return {
        "nats-server-tls": {
            "tls.crt": "".join(p.bytes().decode() for p in server.cert_chain_pems),
            "tls.key": server.private_key_pem.bytes().decode(),
        },
        "nats-auth": {"auth.conf": account.server_config()},
        "nats-client-tls": {"ca.crt": ca.cert_pem.bytes().decode()},
        "nats-creds": {"user.creds": creds},
    }, account


def secret_folder(workdir: Path, secrets: dict[str, dict[str, str]], volume: Manifest) -> Path:
    """A local folder with the files a Secret (or projected) volume would hold."""
    folder = workdir / "volumes" / volume["name"]
    sources = volume.get("projected", {}).get("sources") or [volume]
    for source in sources:
        secret = source.get("secret")
        if secret is None:
            continue
        name = secret.get("secretName") or secret["name"]
        for item in secret["items"]:
            target = folder / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(secrets[name][item["key"]])
            target.chmod(0o600)
    return folder


def start_nats_cluster(ha: list[Manifest], fleet: Fleet, secrets: Any) -> dict[str, int]:
    """The StatefulSet's three pods as local nats-servers, each with the overlay's config:
    its ports and the route host names moved to loopback, its volumes to local folders.
    Returns the client port of each pod's host name."""
    statefulset = nats_set(ha)
    spec = statefulset["spec"]
    c = container(statefulset)
    assert c["args"][0] == "-c"
    config_mount = str(Path(c["args"][1]).parent)
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    conf = configmap_data(ha, "nats-config")["nats-server.conf"]
    headless = spec["serviceName"]
    replicas = spec["replicas"]
    ports = [{"client": free_port(), "cluster": free_port(), "monitor": free_port()}
             for _ in range(replicas)]  # fmt: skip
    for index in range(replicas):
        pod = f"nats-{index}"
        node = fleet.workdir / pod
        mounts: dict[str, Path] = {}
        for mount in c["volumeMounts"]:
            volume = volumes.get(mount["name"])
            if volume is None or "emptyDir" in volume:
                mounts[mount["mountPath"]] = node / mount["name"]  # claim or scratch space
            else:
                mounts[mount["mountPath"]] = secret_folder(node, secrets, volume)
        for folder in mounts.values():
            folder.mkdir(parents=True, exist_ok=True)
        text = conf
        for name, port in ports[index].items():
            text = text.replace(f"0.0.0.0:{CONTAINER_PORTS[name]}", f"127.0.0.1:{port}")
        for other in range(replicas):
            text = text.replace(
                f"nats-{other}.{headless}:6222", f"127.0.0.1:{ports[other]['cluster']}"
            )
        config_file = mounts[config_mount] / "nats-server.conf"
        config_file.write_text(local_path(text, mounts))
        env = {"PATH": os.environ.get("PATH", ""), "POD_NAME": pod}
        fleet.start(pod, [nats_server(), "-c", str(config_file)], env)
    for index in range(replicas):
        health = f"http://127.0.0.1:{ports[index]['monitor']}/healthz"
        wait_until(lambda url=health: http_ok(url), 60, f"nats-{index} in the cluster", fleet)
    services = {f"nats-{i}.{headless}": ports[i]["client"] for i in range(replicas)}
    services["monitor"] = ports[0]["monitor"]
    return services


def test_the_ha_manifests_run_a_test_exactly_once_on_three_nats_nodes(
    ha: list[Manifest], fleet: Fleet
) -> None:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.fail("redis-server not found: run scripts/install-system-deps.sh")
    secrets, _ = write_secrets(fleet.workdir)
    redis_port = free_port()
    fleet.start(
        "redis",
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--notify-keyspace-events", "Ex", "--dir", str(fleet.workdir)],
        {"PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    wait_until(lambda: redis_answers(redis_port), 20, "redis-server", fleet)
    services = start_nats_cluster(ha, fleet, secrets)
    monitor = services.pop("monitor")
    mounts: dict[str, Path] = {}
    for name in ("generator", "consumer"):
        deployment = find(ha, "Deployment", name)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        for mount in container(deployment)["volumeMounts"]:
            if "secret" in volumes[mount["name"]]:
                folder = secret_folder(fleet.workdir / name, secrets, volumes[mount["name"]])
                mounts[mount["mountPath"]] = folder
    run_the_manifests(ha, fleet, {"redis": redis_port, **services}, mounts)

    # The consumers made the stream as the overlay says: on all three nodes, in files.
    url = f"http://127.0.0.1:{monitor}/jsz?accounts=true&streams=true&config=true"
    report = httpx.get(url, timeout=5).json()
    [stream] = [
        s for account in report.get("account_details", []) for s in account.get("stream_detail", [])
    ]
    assert stream["config"]["num_replicas"] == 3
    assert stream["config"]["storage"] == "file"
    assert len(stream["cluster"]["replicas"]) == 2  # and a leader
