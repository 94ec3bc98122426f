"""Metric names follow the conventions, and each service's registry holds only its own."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from shared import telemetry

RUNTIME = ("process_", "python_")


def families(registry: CollectorRegistry) -> dict[str, str]:
    """Application metric families of ``registry`` (name -> help), runtime ones left out."""
    return {
        metric.name: metric.documentation
        for metric in registry.collect()
        if not metric.name.startswith(RUNTIME)
    }


def test_every_name_is_prefixed_and_documented() -> None:
    for registry in (telemetry.CONSUMER_REGISTRY, telemetry.GENERATOR_REGISTRY):
        for name, documentation in families(registry).items():
            assert name.startswith("expiry_pipeline_"), name
            assert re.fullmatch(r"[a-z_]+", name), name
            assert len(documentation) > 15, f"{name} needs a help text"


def test_counters_and_histograms_carry_their_unit() -> None:
    for registry in (telemetry.CONSUMER_REGISTRY, telemetry.GENERATOR_REGISTRY):
        for metric in registry.collect():
            if metric.name.startswith(RUNTIME):
                continue
            names = {sample.name for sample in metric.samples}
            if metric.type == "counter":
                assert names == {f"{metric.name}_total"}, names
            if metric.type == "histogram":
                assert metric.name.endswith(("_seconds", "_keys")), metric.name


def test_each_service_exports_only_its_own() -> None:
    generator = families(telemetry.GENERATOR_REGISTRY)
    consumer = families(telemetry.CONSUMER_REGISTRY)
    assert set(generator) == {
        "expiry_pipeline_generated_keys",
        "expiry_pipeline_load_tests",
        "expiry_pipeline_redis_up",
    }
    assert "expiry_pipeline_consumed_keys" in consumer
    # Both measure their own reach to Redis; nothing else is shared.
    assert set(generator) & set(consumer) == {"expiry_pipeline_redis_up"}


def test_labels_exist_before_the_first_event_and_never_name_a_key() -> None:
    text = telemetry.render(telemetry.CONSUMER_REGISTRY)[0].decode()
    for task in ("expiry_listener", "dedup_publisher", "pull_worker", "sweeper"):
        assert f'expiry_pipeline_errors_total{{task="{task}"}}' in text
    assert 'expiry_pipeline_published_keys_total{outcome="failed"}' in text
    assert "gen-key:" not in text
