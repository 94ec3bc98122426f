"""The rendered Kubernetes manifests (kubectl kustomize k8s/) meet the deployment requirements,
object by object."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from .manifests import (
    NAMESPACE,
    Manifest,
    config_variables,
    configmap_data,
    container,
    container_port,
    find,
    of_kind,
)

DEPLOYMENTS = ("redis", "nats", "generator", "consumer")
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)


def test_renders_exactly_the_expected_objects(base: list[Manifest]) -> None:
    rendered = sorted((o["kind"], o["metadata"]["name"]) for o in base)
    assert rendered == sorted(
        [
            ("Namespace", NAMESPACE),
            ("ConfigMap", "pipeline-config"),
            ("ConfigMap", "nats-config"),
            ("ConfigMap", "generator-config"),
            ("ConfigMap", "consumer-config"),
            ("Deployment", "redis"),
            ("Deployment", "nats"),
            ("Deployment", "generator"),
            ("Deployment", "consumer"),
            ("Service", "redis"),
            ("Service", "nats"),
            ("Service", "generator"),
            ("NetworkPolicy", "redis-clients"),
            ("NetworkPolicy", "nats-clients"),
            ("PodDisruptionBudget", "consumer"),
        ]
    )


def test_everything_lives_in_the_pipeline_namespace(base: list[Manifest]) -> None:
    for obj in base:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_namespace_enforces_the_restricted_pod_security_standard(base: list[Manifest]) -> None:
    labels = find(base, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_object_has_the_recommended_labels(base: list[Manifest]) -> None:
    for obj in base:
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in RECOMMENDED_LABELS if k not in labels]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "expiry-pipeline"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_workloads_carry_labels_and_select_their_own_pods(base: list[Manifest], name: str) -> None:
    deployment = find(base, "Deployment", name)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for labels in (deployment["metadata"]["labels"], pod_labels):
        assert labels["app.kubernetes.io/name"] == name
        assert labels["app.kubernetes.io/version"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": "expiry-pipeline",
    }
    assert selector.items() <= pod_labels.items()
    service_selectors = [
        s["spec"]["selector"] for s in of_kind(base, "Service") if s["metadata"]["name"] == name
    ]
    for service_selector in service_selectors:
        assert service_selector.items() <= pod_labels.items()


@pytest.mark.parametrize(
    ("name", "cpu", "memory"),
    [
        ("redis", "200m", "256Mi"),
        ("nats", "200m", "512Mi"),
        ("generator", "200m", "256Mi"),
        ("consumer", "200m", "256Mi"),
    ],
)
def test_resources_match_the_design(base: list[Manifest], name: str, cpu: str, memory: str) -> None:
    resources = container(find(base, "Deployment", name))["resources"]
    assert resources["limits"] == {"cpu": cpu, "memory": memory}
    assert set(resources["requests"]) == {"cpu", "memory"}
    # Memory is not overcommitted: a pod is never OOM-killed for using what it asked for.
    assert resources["requests"]["memory"] == memory


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_pods_run_unprivileged_on_a_read_only_root(base: list[Manifest], name: str) -> None:
    pod = find(base, "Deployment", name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    for c in pod["containers"]:
        security = c["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in security
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmp_mounts = [
        m for c in pod["containers"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"
    ]
    assert len(tmp_mounts) == len(pod["containers"]), "every container gets a writable /tmp"
    for mount in tmp_mounts:
        assert "emptyDir" in volumes[mount["name"]]


def test_redis_sends_expired_events_and_keeps_nothing_on_disk(base: list[Manifest]) -> None:
    redis = container(find(base, "Deployment", "redis"))
    argv = redis["command"] + redis["args"]
    assert argv[0] == "redis-server"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--notify-keyspace-events"] == "KEgx"
    assert (pairs["--hz"], pairs["--active-expire-effort"]) == ("100", "10")
    assert pairs["--save"] == ""
    assert pairs["--appendonly"] == "no"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert find(base, "Deployment", "redis")["spec"]["replicas"] == 1
    service = find(base, "Service", "redis")
    assert [
        (p["port"], container_port(redis, p["targetPort"])) for p in service["spec"]["ports"]
    ] == [(6379, 6379)]


def test_nats_runs_jetstream_with_monitoring_on_8222(base: list[Manifest]) -> None:
    nats = container(find(base, "Deployment", "nats"))
    argv = nats["command"] + nats["args"]
    assert argv[0] == "nats-server"
    assert "-js" in argv or "--jetstream" in argv
    monitor_flag = next(f for f in ("-m", "--http_port") if f in argv)
    assert argv[argv.index(monitor_flag) + 1] == "8222"
    assert container_port(nats, "monitor") == 8222
    assert container_port(nats, "client") == 4222
    service_ports = {
        p["port"]: container_port(nats, p["targetPort"])
        for p in find(base, "Service", "nats")["spec"]["ports"]
    }
    assert service_ports == {4222: 4222, 8222: 8222}
    # The JetStream limits file the args point at is mounted from the ConfigMap.
    config_path = argv[argv.index("-c") + 1]
    mount = next(m for m in nats["volumeMounts"] if config_path.startswith(m["mountPath"] + "/"))
    pod = find(base, "Deployment", "nats")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    data = configmap_data(base, volume["configMap"]["name"])
    assert config_path.rsplit("/", 1)[1] in data
    assert "max_memory_store" in data["nats-server.conf"]


def _probe_port(c: Manifest, probe: str) -> int:
    return container_port(c, c[probe]["httpGet"]["port"])


def test_generator_is_one_replica_reachable_on_node_port_30080(base: list[Manifest]) -> None:
    deployment = find(base, "Deployment", "generator")
    generator = container(deployment)
    assert deployment["spec"]["replicas"] == 1
    assert generator["command"] == ["python", "-m", "generator"]
    service = find(base, "Service", "generator")
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert port["nodePort"] == 30080
    http_port = int(configmap_data(base, "generator-config")["PORT"])
    assert container_port(generator, port["targetPort"]) == http_port
    # The generator listens on localhost unless HOST says otherwise: the Service and the
    # kubelet's probes reach it on the pod's own address.
    assert configmap_data(base, "generator-config")["HOST"] == "0.0.0.0"
    assert configmap_data(base, "consumer-config")["HEALTH_HOST"] == "0.0.0.0"


def test_generator_probes_its_real_health_endpoints(base: list[Manifest]) -> None:
    generator = container(find(base, "Deployment", "generator"))
    http_port = int(configmap_data(base, "generator-config")["PORT"])
    assert generator["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert generator["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert generator["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert _probe_port(generator, probe) == http_port


def test_generator_takes_api_token_from_an_optional_secret(base: list[Manifest]) -> None:
    generator = container(find(base, "Deployment", "generator"))
    (token,) = [e for e in generator["env"] if e["name"] == "API_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True
    assert not any(o["kind"] == "Secret" for o in base), "no secret values in the repository"


def test_six_consumers_probe_their_real_health_endpoints(base: list[Manifest]) -> None:
    deployment = find(base, "Deployment", "consumer")
    consumer = container(deployment)
    assert deployment["spec"]["replicas"] == 6
    assert consumer["command"] == ["python", "-m", "consumer"]
    health_port = int(configmap_data(base, "consumer-config")["HEALTH_PORT"])
    assert consumer["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert consumer["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert _probe_port(consumer, probe) == health_port


def test_each_consumer_is_named_after_its_pod(base: list[Manifest]) -> None:
    consumer = container(find(base, "Deployment", "consumer"))
    (consumer_id,) = [e for e in consumer["env"] if e["name"] == "CONSUMER_ID"]
    assert consumer_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_consumers_get_longer_to_stop_than_their_drain(base: list[Manifest]) -> None:
    pod = find(base, "Deployment", "consumer")["spec"]["template"]["spec"]
    drain_s = float(configmap_data(base, "consumer-config").get("SHUTDOWN_GRACE_S", "5"))
    assert pod["terminationGracePeriodSeconds"] >= drain_s + 5


def test_only_one_redis_nats_and_generator_run_at_a_time(base: list[Manifest]) -> None:
    for name in ("redis", "nats", "generator"):
        assert find(base, "Deployment", name)["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(("name", "port_name"), [("generator", "http"), ("consumer", "health")])
def test_prometheus_scrapes_the_metrics_endpoint(
    base: list[Manifest], name: str, port_name: str
) -> None:
    deployment = find(base, "Deployment", name)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == container_port(
        container(deployment), port_name
    )


def test_config_maps_hold_only_variables_the_services_read(base: list[Manifest]) -> None:
    known = config_variables()
    readers = {
        "pipeline-config": known["common"],
        "generator-config": known["generator"],
        "consumer-config": known["consumer"],
    }
    for name, allowed in readers.items():
        unknown = set(configmap_data(base, name)) - allowed
        assert not unknown, f"ConfigMap {name} sets {unknown}; src/shared/config.py reads none"
    for name in ("generator", "consumer"):
        c = container(find(base, "Deployment", name))
        explicit = {e["name"] for e in c.get("env", [])}
        assert explicit <= known[name], f"{name} sets unknown variables {explicit - known[name]}"


@pytest.mark.parametrize("name", ["generator", "consumer"])
def test_services_read_their_config_maps_and_find_redis_and_nats(
    base: list[Manifest], name: str
) -> None:
    c = container(find(base, "Deployment", name))
    refs = [s["configMapRef"]["name"] for s in c["envFrom"]]
    assert refs == ["pipeline-config", f"{name}-config"]
    shared = configmap_data(base, "pipeline-config")
    for variable, service_name in (("REDIS_URL", "redis"), ("NATS_URL", "nats")):
        url = urlsplit(shared[variable])
        assert url.hostname == service_name
        service_ports = [p["port"] for p in find(base, "Service", service_name)["spec"]["ports"]]
        assert url.port in service_ports, f"{variable} points at a port {service_name} lacks"


@pytest.mark.parametrize(("name", "port"), [("redis", 6379), ("nats", 4222)])
def test_only_generator_and_consumers_reach_redis_and_nats(
    base: list[Manifest], name: str, port: int
) -> None:
    pod_labels = find(base, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in of_kind(base, "NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert len(policies) == 1, f"one NetworkPolicy should guard {name}"
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    for rule in spec["ingress"]:
        assert rule.get("from"), "an ingress rule without 'from' admits every pod"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, "only pods in this namespace"
            (expression,) = peer["podSelector"]["matchExpressions"]
            assert expression == {
                "key": "app.kubernetes.io/name",
                "operator": "In",
                "values": ["generator", "consumer"],
            }
    assert port in [p["port"] for rule in spec["ingress"] for p in rule["ports"]]


def test_locally_built_images_are_not_pulled(base: list[Manifest]) -> None:
    for name in ("generator", "consumer"):
        c = container(find(base, "Deployment", name))
        assert c["image"] == f"{name}:latest"
        assert c["imagePullPolicy"] == "IfNotPresent"


def test_consumer_disruptions_are_one_at_a_time(base: list[Manifest]) -> None:
    budget = find(base, "PodDisruptionBudget", "consumer")["spec"]
    assert budget["maxUnavailable"] == 1
    pod_labels = find(base, "Deployment", "consumer")["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
