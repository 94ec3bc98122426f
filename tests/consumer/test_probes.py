"""The probe gauges the alerts watch, against real Redis and NATS that go away."""

from __future__ import annotations

import subprocess
import sys

from consumer.probes import probe_once
from dev.local_system import NatsServer, RedisServer, service_env
from shared import telemetry
from tests.helpers import bridged


def gauge(metric: object) -> float:
    """The value of an unlabelled gauge."""
    (family,) = metric.collect()  # type: ignore[attr-defined]
    return float(family.samples[0].value)


async def test_probes_report_reachability_and_queue_depth(
    redis_server: RedisServer, nats_server: NatsServer
) -> None:
    async with bridged(redis_server.url, nats_server.url) as (redis, jetstream):
        published = await jetstream.publish_batch(
            [(f"gen-key:{i}", {"Nats-Msg-Id": f"probe:{i}"}) for i in range(5)]
        )
        assert published == [None] * 5
        await probe_once(redis, jetstream)
        assert gauge(telemetry.REDIS_UP) == 1
        assert gauge(telemetry.NATS_UP) == 1
        assert gauge(telemetry.JETSTREAM_PENDING) == 5
        assert gauge(telemetry.JETSTREAM_ACK_PENDING) == 0

        redis_server.stop()
        await probe_once(redis, jetstream)
        assert gauge(telemetry.REDIS_UP) == 0
        assert gauge(telemetry.NATS_UP) == 1

        nats_server.stop()
        await probe_once(redis, jetstream)
        assert gauge(telemetry.NATS_UP) == 0
        # The last known depth stays; NATS_UP says it is stale.
        assert gauge(telemetry.JETSTREAM_PENDING) == 5


def test_reachability_is_unknown_before_the_first_probe() -> None:
    # A consumer still connecting must not look like one whose Redis is down: NaN, which
    # the "== 0" alerts never match. A fresh interpreter, as the gauges are process-wide.
    code = (
        "from shared import telemetry; "
        "print(telemetry.render(telemetry.CONSUMER_REGISTRY)[0].decode())"
    )
    text = subprocess.run(
        [sys.executable, "-c", code],
        env=service_env({}),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "expiry_pipeline_redis_up NaN" in text
    assert "expiry_pipeline_nats_up NaN" in text
