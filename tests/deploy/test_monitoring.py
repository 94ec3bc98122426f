"""The observability files: `docker compose --profile observability` (Prometheus + Grafana,
provisioned), the Grafana dashboard, and the Prometheus Operator overlay (k8s/overlays/monitoring)
carrying the same alert rules as observability/prometheus/alerts.yml."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from .k8s_schema import validate_documents
from .manifests import REPO, Manifest, container, container_port, find, of_kind

OBSERVABILITY = REPO / "observability"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "expiry-pipeline.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a Compose service's read-only bind mounts."""
    found = {}
    for volume in service["volumes"]:
        host, target, mode = volume.split(":")
        assert mode == "ro", f"{volume}: observability mounts are read-only"
        found[target] = (REPO / host).resolve()
    return found


def test_observability_is_an_opt_in_profile(compose: dict[str, Any]) -> None:
    assert compose["prometheus"]["profiles"] == ["observability"]
    assert compose["grafana"]["profiles"] == ["observability"]
    assert compose["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert compose["grafana"]["ports"] == ["127.0.0.1:3000:3000"]


def test_prometheus_gets_its_config_and_the_rules_side_by_side(compose: dict[str, Any]) -> None:
    prometheus = compose["prometheus"]
    files = mounts(prometheus)
    for target, host in files.items():
        assert host.is_file(), f"{host} (mounted at {target}) is missing"
    config_path = next(a.split("=", 1)[1] for a in prometheus["command"] if "config.file" in a)
    config = yaml.safe_load(files[config_path].read_text())
    for rule_file in config["rule_files"]:
        target = str(PurePosixPath(config_path).parent / rule_file)
        assert files[target] == ALERTS.resolve()


def test_prometheus_scrapes_the_generator_and_every_consumer_replica(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load((OBSERVABILITY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    generator_port = compose["generator"]["environment"]["PORT"]
    (static,) = jobs["generator"]["static_configs"]
    assert static["targets"] == [f"generator:{generator_port}"]
    (dns,) = jobs["consumer"]["dns_sd_configs"]
    assert dns["names"] == ["consumer"] and dns["type"] == "A"
    assert str(dns["port"]) == compose["consumer"]["environment"]["HEALTH_PORT"]


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["grafana"]
    files = mounts(grafana)
    provisioning = files["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())[
        "providers"
    ]
    dashboards = files[provider["options"]["path"]]
    assert (dashboards / DASHBOARD.name).resolve() == DASHBOARD.resolve()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_dashboard_panels_read_the_chosen_prometheus_and_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert "expiry_pipeline_" in target["expr"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_monitoring_overlay_validates_strictly(monitoring: list[Manifest]) -> None:
    count, errors = validate_documents(monitoring)
    assert errors == []
    assert count == len(monitoring)
    assert {(o["kind"], o["metadata"]["name"]) for o in monitoring} == {
        ("PrometheusRule", "expiry-pipeline"),
        ("PodMonitor", "consumer"),
        ("PodMonitor", "generator"),
    }


def test_prometheus_rule_holds_exactly_the_rule_file(monitoring: list[Manifest]) -> None:
    rule = find(monitoring, "PrometheusRule", "expiry-pipeline")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_pod_monitors_scrape_what_the_pods_annotate(
    base: list[Manifest], monitoring: list[Manifest]
) -> None:
    for monitor in of_kind(monitoring, "PodMonitor"):
        deployment = find(base, "Deployment", monitor["metadata"]["name"])
        template = deployment["spec"]["template"]["metadata"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["labels"].items()
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        port = container_port(container(deployment), endpoint["port"])
        assert str(port) == template["annotations"]["prometheus.io/port"]
        assert endpoint["path"] == template["annotations"]["prometheus.io/path"]
        assert (
            monitor["metadata"]["labels"]["release"]
            == (
                find(monitoring, "PrometheusRule", "expiry-pipeline")["metadata"]["labels"][
                    "release"
                ]
            )
        )
