"""The optional autoscale overlay: the base plus a KEDA ScaledObject on the JetStream
consumer's pending messages."""

from __future__ import annotations

from .manifests import NAMESPACE, Manifest, container, container_port, find, names_module


def _ids(objects: list[Manifest]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_overlay_is_the_base_plus_scaling(base: list[Manifest], autoscale: list[Manifest]) -> None:
    assert _ids(autoscale) - _ids(base) == {
        ("ScaledObject", "consumer"),
        ("NetworkPolicy", "nats-monitoring-keda"),
    }
    assert _ids(base) <= _ids(autoscale)
    for obj in base:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if (kind, name) != ("Deployment", "consumer"):
            assert find(autoscale, kind, name) == obj, f"overlay changed {kind}/{name}"


def test_keda_owns_the_consumer_replica_count(
    base: list[Manifest], autoscale: list[Manifest]
) -> None:
    scaled = find(autoscale, "Deployment", "consumer")
    assert "replicas" not in scaled["spec"]
    expected = find(base, "Deployment", "consumer")
    assert {**scaled["spec"], "replicas": 6} == expected["spec"]


def test_scaled_object_watches_the_pipelines_jetstream_consumer(autoscale: list[Manifest]) -> None:
    names = names_module()
    spec = find(autoscale, "ScaledObject", "consumer")["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "consumer",
    }
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "nats-jetstream"
    metadata = trigger["metadata"]
    assert metadata["account"] == "$G"
    assert metadata["stream"] == names.STREAM
    assert metadata["consumer"] == names.DURABLE
    assert int(metadata["lagThreshold"]) > 0
    # KEDA runs in its own namespace: the endpoint must name the nats Service in full.
    host, port = metadata["natsServerMonitoringEndpoint"].rsplit(":", 1)
    assert host == f"nats.{NAMESPACE}.svc.cluster.local"
    nats = container(find(autoscale, "Deployment", "nats"))
    service_ports = find(autoscale, "Service", "nats")["spec"]["ports"]
    monitor = next(p for p in service_ports if p["port"] == int(port))
    assert container_port(nats, monitor["targetPort"]) == 8222


def test_keda_may_read_nats_monitoring_and_nothing_else(autoscale: list[Manifest]) -> None:
    spec = find(autoscale, "NetworkPolicy", "nats-monitoring-keda")["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "nats"
    (rule,) = spec["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}}
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8222}]
