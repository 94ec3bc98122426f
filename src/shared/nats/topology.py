"""The work queue's stream and durable consumer: their settings, created where missing,
compared where present."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nats.js import api
from nats.js.errors import NotFoundError, ServerError

from shared import names
from shared.config import StreamSettings
from shared.nats import _internals as internals

#: The priority group every pull request names: with the overflow policy, a request that
#: asks for ``min_pending`` gets messages only while that many wait (nats-server 2.11+).
PRIORITY_GROUP = "workers"


DEFAULT_STREAM = StreamSettings()


_STORAGE_TYPES = {"memory": api.StorageType.MEMORY, "file": api.StorageType.FILE}


def stream_config(
    queue: names.Queue, settings: StreamSettings = DEFAULT_STREAM
) -> api.StreamConfig:
    """The settings of ``queue``'s stream: a WorkQueue kept for a day at most, with the
    replicas and storage of ``settings`` (one replica in memory by default)."""
    return api.StreamConfig(
        name=queue.stream,
        subjects=[queue.subject],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=_STORAGE_TYPES[settings.storage],
        num_replicas=settings.replicas,
        max_age=names.STREAM_MAX_AGE_S,
    )


def consumer_config(queue: names.Queue) -> api.ConsumerConfig:
    """The settings of the durable pull consumer every consumer process shares."""
    return api.ConsumerConfig(
        durable_name=queue.durable,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        max_deliver=names.MAX_DELIVER,
        ack_wait=names.ACK_WAIT_S,
        filter_subject=queue.subject,
        max_ack_pending=20000,
    )


STREAM_CONFIG = stream_config(names.queue_of())


CONSUMER_CONFIG = consumer_config(names.queue_of())


def _differences(wanted: Any, actual: Any, fields: Sequence[str]) -> list[str]:
    diffs = []
    for field in fields:
        want, have = getattr(wanted, field), getattr(actual, field)
        if want is not None and want != have:
            diffs.append(f"{field}: wanted {want!r}, found {have!r}")
    return diffs


async def ensure_topology(js: Any, queue: names.Queue, settings: StreamSettings) -> list[str]:
    wanted_stream, wanted_consumer = stream_config(queue, settings), consumer_config(queue)
    try:
        info = await js.stream_info(queue.stream)
        diffs = _differences(
            wanted_stream,
            info.config,
            ("subjects", "retention", "storage", "num_replicas", "max_age"),
        )
        diffs = [f"stream {queue.stream} {d}" for d in diffs]
    except NotFoundError:
        try:
            await js.add_stream(wanted_stream)
        except ServerError as exc:
            raise _stream_refused(exc, settings) from None
        diffs = []
    try:
        raw = await consumer_info(js, queue)
        grouped = has_priority_group(
            raw
        )  # before from_response, which turns the config into an object
        consumer = api.ConsumerInfo.from_response(raw)
        found = _differences(
            wanted_consumer, consumer.config, ("ack_policy", "max_deliver", "ack_wait")
        )
        if not grouped:
            found.append(
                f"priority_groups: wanted [{PRIORITY_GROUP!r}] (overflow), found none: every "
                "consumer then pulls at every rate, in smaller batches"
            )
        diffs += [f"consumer {queue.durable} {d}" for d in found]
    except NotFoundError:
        config = {
            **wanted_consumer.as_dict(),
            "priority_groups": [PRIORITY_GROUP],
            "priority_policy": "overflow",
        }
        await internals.api_request(
            js,
            f"CONSUMER.CREATE.{queue.stream}.{queue.durable}",
            json.dumps({"stream_name": queue.stream, "config": config}).encode(),
        )
    return diffs


async def consumer_info(js: Any, queue: names.Queue) -> dict[str, Any]:
    """The durable consumer's info as JetStream sends it (nats-py drops fields it does not
    know, such as the priority groups)."""
    return await internals.api_request(js, f"CONSUMER.INFO.{queue.stream}.{queue.durable}", b"")


def has_priority_group(info: dict[str, Any]) -> bool:
    config = info.get("config") or {}
    return PRIORITY_GROUP in (config.get("priority_groups") or []) and (
        config.get("priority_policy") == "overflow"
    )


def _stream_refused(exc: ServerError, settings: StreamSettings) -> Exception:
    """JetStream's refusal to create the stream, with what to change when the settings are why."""
    description = getattr(exc, "description", None) or str(exc)
    if settings.replicas > 1 and (
        "non-clustered" in description or "insufficient resources" in description
    ):
        return RuntimeError(
            f"JetStream cannot keep STREAM_REPLICAS={settings.replicas} copies ({description}): "
            "point NATS_URL at a cluster of at least that many servers, or lower STREAM_REPLICAS"
        )
    return RuntimeError(f"JetStream refused to create the stream: {description}")


async def consumer_state(js: Any, queue: names.Queue) -> dict[str, int]:
    info = await js.consumer_info(queue.stream, queue.durable)
    return {
        "num_pending": int(info.num_pending or 0),
        "num_ack_pending": int(info.num_ack_pending or 0),
        "num_redelivered": int(info.num_redelivered or 0),
    }
