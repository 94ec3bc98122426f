"""The HA overlay on a Redis Cluster (kubectl kustomize k8s/overlays/ha-redis-cluster): the
NATS cluster of ../ha, the base's single Redis gone, and the services pointed at a Redis
Cluster from a maintained chart, with its password from the chart's Secret."""

from __future__ import annotations

import re

import pytest

from shared.bridge.redis_io import is_cluster_url
from shared.config import load_consumer, load_generator

from .k8s_schema import validate_documents
from .manifests import Manifest, configmap_data, container, find, of_kind
from .test_schemas import no_network  # noqa: F401 - a fixture

SAMPLE_PASSWORD = "s3cret"


@pytest.mark.usefixtures("no_network")
def test_the_overlay_validates_strictly_offline(ha_redis_cluster: list[Manifest]) -> None:
    count, errors = validate_documents(ha_redis_cluster)
    assert errors == []
    assert count == len(ha_redis_cluster) > 0


def test_the_single_redis_is_gone_and_nats_stays_a_cluster(
    ha_redis_cluster: list[Manifest], ha: list[Manifest]
) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in ha_redis_cluster}
    for redis_object in (("Deployment", "redis"), ("Service", "redis")):
        assert redis_object not in names
    assert ("NetworkPolicy", "redis-clients") not in names
    assert ("StatefulSet", "nats") in names
    # Everything else is the HA overlay's, unchanged in number.
    assert len(ha_redis_cluster) == len(ha) - 3
    assert "REDIS_URL" not in configmap_data(ha_redis_cluster, "pipeline-config")


@pytest.mark.parametrize("name", ["generator", "consumer"])
def test_the_services_reach_the_cluster_with_the_charts_password(
    ha_redis_cluster: list[Manifest], name: str
) -> None:
    """``$(REDIS_PASSWORD)`` is expanded by Kubernetes from the variable defined before it; the
    result is a Redis Cluster URL both services accept."""
    env = container(find(ha_redis_cluster, "Deployment", name))["env"]
    order = [var["name"] for var in env]
    assert order.index("REDIS_PASSWORD") < order.index("REDIS_URL")
    [password] = [var for var in env if var["name"] == "REDIS_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"] == {
        "name": "redis-cluster",
        "key": "redis-password",
    }
    [url] = [var["value"] for var in env if var["name"] == "REDIS_URL"]
    expanded = re.sub(r"\$\(REDIS_PASSWORD\)", SAMPLE_PASSWORD, url)
    assert is_cluster_url(expanded)
    load = load_consumer if name == "consumer" else load_generator
    assert load({"REDIS_URL": expanded}).common.redis_url == expanded


def test_no_object_still_names_the_single_redis(ha_redis_cluster: list[Manifest]) -> None:
    for deployment in of_kind(ha_redis_cluster, "Deployment"):
        for var in container(deployment).get("env", []):
            assert "//redis:" not in str(var.get("value", "")), var
