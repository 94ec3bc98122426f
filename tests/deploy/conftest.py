"""Fixtures for the deployment tests: the rendered base and autoscale kustomizations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .manifests import AUTOSCALE, HA, HA_REDIS_CLUSTER, K8S, MONITORING, Manifest, render
from .test_local_run import Fleet


@pytest.fixture(scope="session")
def base() -> list[Manifest]:
    """Every object ``kubectl kustomize k8s/`` renders."""
    return render(K8S)


@pytest.fixture(scope="session")
def autoscale() -> list[Manifest]:
    """Every object ``kubectl kustomize k8s/overlays/autoscale`` renders."""
    return render(AUTOSCALE)


@pytest.fixture(scope="session")
def monitoring() -> list[Manifest]:
    """Every object ``kubectl kustomize k8s/overlays/monitoring`` renders."""
    return render(MONITORING)


@pytest.fixture(scope="session")
def ha() -> list[Manifest]:
    """Every object ``kubectl kustomize k8s/overlays/ha`` renders."""
    return render(HA)


@pytest.fixture(scope="session")
def ha_redis_cluster() -> list[Manifest]:
    """Every object ``kubectl kustomize k8s/overlays/ha-redis-cluster`` renders."""
    return render(HA_REDIS_CLUSTER)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Local processes started from the manifests, stopped at the end (the tests' kubelet)."""
    started = Fleet(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
