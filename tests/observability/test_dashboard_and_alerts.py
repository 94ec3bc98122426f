"""A real Prometheus scrapes a running local system through a load test; every query of the
dashboard and every alert rule must then answer with data, so no panel is empty because of a
wrong name and no alert watches a series nobody exports."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import main as expiry_pipeline
from dev.local_system import LocalSystem, wait_until
from shared.telemetry import CONSUMER_REGISTRY, GENERATOR_REGISTRY

from .prometheus import ALERTS, OBSERVABILITY, PrometheusServer
from .queries import alert_rules, dashboard_queries, metric_names

KEYS = 300


def exported_series() -> set[str]:
    """Every series name the services can export (labelled ones before their first sample too)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        metric.name + suffix
        for registry in (CONSUMER_REGISTRY, GENERATOR_REGISTRY)
        for metric in registry.collect()
        for suffix in suffixes.get(metric.type, ("",))
    }


def test_promtool_accepts_the_rules_and_the_compose_config() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: make setup installs Debian's prometheus package"
    for command in (
        [promtool, "check", "rules", str(ALERTS)],
        [promtool, "check", "config", str(OBSERVABILITY / "prometheus" / "prometheus.yml")],
        [promtool, "test", "rules", str(OBSERVABILITY / "prometheus" / "alerts-test.yml")],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_name_in_the_dashboard_and_rules_is_exported() -> None:
    exported = exported_series()
    expressions = [*dashboard_queries().values(), *(r["expr"] for r in alert_rules())]
    for expr in expressions:
        unknown = metric_names(expr) - exported
        assert not unknown, f"{expr} reads series nobody exports: {unknown}"


@pytest.fixture(scope="module")
def prometheus(
    local_system: LocalSystem, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """Prometheus scraping the generator and every consumer of the running local system."""
    jobs = {
        "generator": [f"127.0.0.1:{local_system.generator_port}"],
        "consumer": [f"127.0.0.1:{port}" for port in local_system.health_ports],
    }
    server = PrometheusServer(Path(tmp_path_factory.mktemp("prometheus")), jobs).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def after_a_test(local_system: LocalSystem, prometheus: PrometheusServer) -> PrometheusServer:
    """The same Prometheus once a small load test has run and been scraped to its end."""
    argv = ["--url", local_system.base_url, "run", "--keys", str(KEYS), "--delay", "1"]
    assert expiry_pipeline(argv) == 0, local_system.logs()
    # The generator and the consumers are scraped apart, each on its own schedule: the
    # consumers' last count may be in while the generator's is from before its last keys.
    wait_until(
        lambda: all(
            prometheus.query(f"sum(expiry_pipeline_{counted}_keys_total) >= {KEYS}")
            for counted in ("generated", "consumed")
        ),
        30,
        "Prometheus scraping the generated and the consumed keys",
        interval=0.2,
    )
    return prometheus


def has_a_number(result: list[dict[str, object]]) -> bool:
    """Whether an instant vector holds at least one sample that is a number (not NaN)."""
    values = [float(sample["value"][1]) for sample in result]  # type: ignore[index]
    return any(not math.isnan(value) for value in values)


@pytest.mark.e2e
def test_every_dashboard_query_returns_data(after_a_test: PrometheusServer) -> None:
    empty = {
        title: expr
        for title, expr in dashboard_queries().items()
        if not has_a_number(after_a_test.query(expr))
    }
    assert not empty, f"dashboard queries without data: {empty}"


@pytest.mark.e2e
def test_every_alert_rule_evaluates_over_series_that_exist(
    after_a_test: PrometheusServer,
) -> None:
    def evaluated() -> list[dict[str, object]] | None:
        groups = after_a_test.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = not any(str(rule["lastEvaluation"]).startswith("0001") for rule in rules)
        return rules if done and len(rules) == len(alert_rules()) else None

    rules = wait_until(evaluated, 15, "every rule evaluated", interval=0.2)
    for rule in rules:
        assert rule["health"] == "ok", rule
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            assert after_a_test.query(name), f"{rule['alert']}: no series {name}"


@pytest.mark.e2e
def test_a_healthy_run_fires_no_alert(after_a_test: PrometheusServer) -> None:
    firing = [a for a in after_a_test.api("alerts")["alerts"] if a["state"] == "firing"]
    assert firing == []


@pytest.mark.e2e
def test_prometheus_counts_what_the_generator_counted(
    local_system: LocalSystem, after_a_test: PrometheusServer
) -> None:
    status = local_system.status()
    assert status["verdict"]["exactly_once"]
    generated = after_a_test.query("sum(expiry_pipeline_generated_keys_total)")
    consumed = after_a_test.query("sum(expiry_pipeline_consumed_keys_total)")
    assert float(generated[0]["value"][1]) == float(consumed[0]["value"][1]) == KEYS
    ready = after_a_test.query("sum(expiry_pipeline_consumer_ready)")
    assert float(ready[0]["value"][1]) == len(local_system.consumer_processes)


@pytest.mark.e2e
def test_each_service_serves_only_its_own_metrics(after_a_test: PrometheusServer) -> None:
    def names(job: str) -> set[str]:
        selector = f'{{job="{job}", __name__=~"expiry_pipeline_.+"}}'
        return {
            s["metric"]["__name__"] for s in after_a_test.query(f"count by (__name__) ({selector})")
        }

    generator, consumer = names("generator"), names("consumer")
    assert generator == {
        "expiry_pipeline_generated_keys_total",
        "expiry_pipeline_load_tests_total",
        "expiry_pipeline_redis_up",
    }
    assert "expiry_pipeline_consumed_keys_total" in consumer
    assert generator & consumer == {"expiry_pipeline_redis_up"}
