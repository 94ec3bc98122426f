"""The JetStream topology against a real nats-server."""

import nats
from nats.js import api

from dev.local_system import NatsServer
from shared import names
from shared.bridge import JetStream, open_bridge
from shared.bridge.loop import crossing


async def test_creates_the_stream_and_durable_consumer_of_the_contract(
    nats_server: NatsServer,
) -> None:
    async with open_bridge():
        jetstream = await JetStream.connect(nats_server.url, None, "test")
        assert await jetstream.ensure_topology() == []
        assert await jetstream.ensure_topology() == []  # idempotent

        async def read_back() -> tuple[api.StreamConfig, api.ConsumerConfig]:
            nc = await nats.connect(nats_server.url)
            js = nc.jetstream()
            stream = (await js.stream_info(names.STREAM)).config
            consumer = (await js.consumer_info(names.STREAM, names.DURABLE)).config
            await nc.close()
            return stream, consumer

        stream, consumer = await crossing(read_back)()
        await jetstream.aclose()
    assert stream.subjects == ["Stream.Workgroup.Policy.Events"]
    assert stream.retention == api.RetentionPolicy.WORK_QUEUE
    assert stream.storage == api.StorageType.MEMORY
    assert stream.max_age == 24 * 3600
    assert consumer.durable_name == "key_expiration_processors"
    assert consumer.ack_policy == api.AckPolicy.EXPLICIT
    assert consumer.max_deliver == 3
    assert consumer.ack_wait == 5


async def test_an_existing_stream_with_other_settings_is_reported_not_replaced(
    nats_server: NatsServer,
) -> None:
    async def create_other() -> None:
        nc = await nats.connect(nats_server.url)
        await nc.jetstream().add_stream(
            name=names.STREAM, subjects=[names.SUBJECT], storage=api.StorageType.FILE
        )
        await nc.close()

    async with open_bridge():
        await crossing(create_other)()
        jetstream = await JetStream.connect(nats_server.url, None, "test")
        differences = await jetstream.ensure_topology()
        await jetstream.aclose()
    assert any("storage" in d and "file" in d for d in differences), differences
    assert any("retention" in d for d in differences), differences
