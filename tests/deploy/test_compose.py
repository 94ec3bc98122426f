"""docker-compose.yml runs the same pipeline as the Kubernetes manifests: Redis with expired
events, NATS with JetStream and monitoring, the generator on localhost:30080, 6 consumers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .manifests import REPO, config_variables


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"]


def test_runs_the_four_parts(services: dict[str, Any]) -> None:
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"redis", "nats", "generator", "consumer"}


def test_redis_sends_expired_events_and_keeps_nothing(services: dict[str, Any]) -> None:
    argv = services["redis"]["command"]
    assert argv[0] == "redis-server"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert pairs["--notify-keyspace-events"] == "KEgx"
    assert (pairs["--hz"], pairs["--active-expire-effort"]) == ("100", "10")
    assert pairs["--save"] == ""
    assert pairs["--appendonly"] == "no"


def test_nats_runs_jetstream_with_monitoring(services: dict[str, Any]) -> None:
    argv = services["nats"]["command"]
    assert argv[0] == "nats-server"
    assert "-js" in argv
    assert argv[argv.index("-m") + 1] == "8222"


def test_generator_listens_on_localhost_30080(services: dict[str, Any]) -> None:
    generator = services["generator"]
    port = generator["environment"]["PORT"]
    assert generator["ports"] == [f"127.0.0.1:30080:{port}"]
    assert generator["build"]["dockerfile"] == "docker/Dockerfile.generator"
    # The generator listens on localhost unless HOST says otherwise; in its container the
    # published port arrives on the container's own interface.
    assert generator["environment"]["HOST"] == "0.0.0.0"


def test_six_consumers(services: dict[str, Any]) -> None:
    consumer = services["consumer"]
    assert consumer["deploy"]["replicas"] == 6
    assert consumer["build"]["dockerfile"] == "docker/Dockerfile.consumer"
    assert "CONSUMER_ID" not in consumer["environment"], "each replica names itself"


@pytest.mark.parametrize(
    "name", ["redis", "nats", "generator", "consumer", "prometheus", "grafana"]
)
def test_every_service_has_a_healthcheck(services: dict[str, Any], name: str) -> None:
    test = services[name]["healthcheck"]["test"]
    assert test[0] == "CMD"


@pytest.mark.parametrize(("name", "port_var"), [("generator", "PORT"), ("consumer", "HEALTH_PORT")])
def test_app_healthchecks_ask_readyz_on_the_configured_port(
    services: dict[str, Any], name: str, port_var: str
) -> None:
    port = services[name]["environment"][port_var]
    assert f"http://127.0.0.1:{port}/readyz" in services[name]["healthcheck"]["test"][-1]


def test_consumers_listen_for_probes_on_every_interface(services: dict[str, Any]) -> None:
    assert services["consumer"]["environment"]["HEALTH_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", ["generator", "consumer"])
def test_app_services_are_hardened_and_wait_for_their_backends(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "nats": {"condition": "service_healthy"},
    }
    assert (REPO / service["build"]["dockerfile"]).is_file()
    unknown = set(service["environment"]) - config_variables()[name]
    assert not unknown, f"{name} sets {unknown}, which src/shared/config.py never reads"
    assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert service["environment"]["NATS_URL"] == "nats://nats:4222"


def test_consumers_get_longer_to_stop_than_their_drain(services: dict[str, Any]) -> None:
    consumer = services["consumer"]
    grace = consumer["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace[:-1]) > int(consumer["environment"]["SHUTDOWN_GRACE_S"])
