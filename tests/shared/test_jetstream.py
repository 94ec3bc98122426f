"""The JetStream topology against a real nats-server."""

from pathlib import Path

import nats
import pytest
import trio
from nats.js import api

from dev.local_system import NatsServer
from shared import names
from shared.bridge import open_bridge
from shared.bridge.loop import crossing
from shared.config import StreamSettings
from shared.nats import JetStream
from shared.nats.pull import OVERFLOW_PENDING, Feed
from shared.nats.topology import CONSUMER_CONFIG


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


async def test_the_stream_takes_its_storage_from_the_settings(nats_server: NatsServer) -> None:
    async def storage() -> api.StorageType | None:
        nc = await nats.connect(nats_server.url)
        config = (await nc.jetstream().stream_info(names.STREAM)).config
        await nc.close()
        return config.storage

    async with open_bridge():
        jetstream = await JetStream.connect(
            nats_server.url, None, "test", stream=StreamSettings(replicas=1, storage="file")
        )
        assert await jetstream.ensure_topology() == []
        found = await crossing(storage)()
        await jetstream.aclose()
        # A consumer configured for memory (the default) reports the file stream, and the
        # replicas it cannot have on a single server.
        other = await JetStream.connect(
            nats_server.url, None, "test", stream=StreamSettings(replicas=3, storage="memory")
        )
        differences = await other.ensure_topology()
        await other.aclose()
    assert found == api.StorageType.FILE
    assert any("storage" in d and "memory" in d for d in differences), differences
    assert any("num_replicas: wanted 3, found 1" in d for d in differences), differences


async def test_more_replicas_than_servers_says_what_to_change(nats_server: NatsServer) -> None:
    async with open_bridge():
        jetstream = await JetStream.connect(
            nats_server.url, None, "test", stream=StreamSettings(replicas=3, storage="file")
        )
        try:
            with pytest.raises(RuntimeError, match="STREAM_REPLICAS=3") as error:
                await jetstream.ensure_topology()
        finally:
            await jetstream.aclose()
    assert "point NATS_URL at a cluster" in str(error.value)


async def test_a_batch_is_answered_per_message_whether_jetstream_stored_it(
    nats_server: NatsServer,
) -> None:
    async with open_bridge():
        jetstream = await JetStream.connect(nats_server.url, None, "test")
        await jetstream.ensure_topology()
        items = [("k:1", {"Nats-Msg-Id": "a"}), ("k:2 with\r\nnewline", {"Nats-Msg-Id": "b"})]
        assert await jetstream.publish_batch(items) == [None, None]
        assert await jetstream.publish_batch(items[:1]) == [None]  # a duplicate: it had it
        assert await jetstream.publish_batch([]) == []

        feed = await jetstream.open_feed()
        stored: list[str] = []
        with trio.fail_after(5):
            while len(stored) < 2:
                stored += [m.key for m in await feed.fetch(10, 1)]
        assert stored == ["k:1", "k:2 with\r\nnewline"]
        await feed.close()
        await crossing(jetstream._js.delete_stream)(names.STREAM)
        with trio.fail_after(4):  # no stream listens: refused at once, not after a timeout
            refusals = await jetstream.publish_batch(items)
        assert refusals == ["no stream takes the subject (status 503)"] * 2
        await jetstream.aclose()


async def test_only_primary_feeds_get_messages_unless_a_backlog_waits(
    nats_server: NatsServer,
) -> None:
    async with open_bridge():
        jetstream = await JetStream.connect(nats_server.url, None, "test")
        assert await jetstream.ensure_topology() == []  # created with the priority group
        primary = True
        lead = await jetstream.open_feed(lambda: primary)
        other = await jetstream.open_feed(lambda: False)
        assert await other.fetch(10, 0.1) == []  # its request is in, asking for a backlog
        assert await lead.fetch(10, 0.1) == []
        await jetstream.publish_batch([(f"k:{i}", {"Nats-Msg-Id": f"a{i}"}) for i in range(5)])
        got = []
        with trio.fail_after(5):
            while len(got) < 5:
                got += await lead.fetch(10, 0.5)
        assert await other.fetch(10, 0.3) == []  # a trickle goes to the primary alone

        primary = False  # no primary left: only a backlog of OVERFLOW_PENDING is handed out
        assert await lead.fetch(10, 0.1) == []
        backlog = [(f"b:{i}", {"Nats-Msg-Id": f"b{i}"}) for i in range(OVERFLOW_PENDING * 2)]
        await jetstream.publish_batch(backlog)
        taken = []
        with trio.fail_after(5):
            while not taken:
                taken += await other.fetch(256, 0.5)
        await jetstream.ack([*got, *taken])
        await lead.close()
        await other.close()
        await jetstream.aclose()


async def test_a_trickle_is_pulled_within_seconds_when_no_feed_is_primary(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lead died (or holds its slot without knowing it yet): the others still ask without
    ``min_pending`` now and then, so a trickle below the backlog threshold is not stranded."""
    monkeypatch.setattr(Feed, "PLAIN_EVERY_S", 0.5)
    async with open_bridge():
        jetstream = await JetStream.connect(nats_server.url, None, "test")
        assert await jetstream.ensure_topology() == []
        other = await jetstream.open_feed(lambda: False)
        assert await other.fetch(10, 0.1) == []
        await jetstream.publish_batch([(f"t:{i}", {"Nats-Msg-Id": f"t{i}"}) for i in range(3)])
        got = []
        with trio.fail_after(10):
            while len(got) < 3:
                got += await other.fetch(10, 0.5)
        await jetstream.ack(got)
        await other.close()
        await jetstream.aclose()


async def test_a_consumer_made_without_the_priority_group_is_reported_and_still_pulled(
    nats_server: NatsServer,
) -> None:
    async def create_plain() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(
            name=names.STREAM, subjects=[names.SUBJECT], retention=api.RetentionPolicy.WORK_QUEUE
        )
        await js.add_consumer(names.STREAM, CONSUMER_CONFIG)
        await nc.close()

    async with open_bridge():
        await crossing(create_plain)()
        jetstream = await JetStream.connect(nats_server.url, None, "test")
        differences = await jetstream.ensure_topology()
        assert any("priority_groups" in d for d in differences), differences
        feed = await jetstream.open_feed(lambda: False)  # every feed pulls, as before
        assert await jetstream.publish_batch([("k:1", {"Nats-Msg-Id": "1"})]) == [None]
        with trio.fail_after(5):
            messages = []
            while not messages:
                messages = await feed.fetch(10, 0.5)
        assert [m.key for m in messages] == ["k:1"]
        await jetstream.ack(messages)
        await feed.close()
        await jetstream.aclose()


async def test_a_full_store_refuses_publishes_with_the_reason_and_takes_them_again(
    tmp_path: Path,
) -> None:
    """JetStream at ``max_memory_store`` answers each publish with its refusal (which the
    publisher logs) and stays up; once the queue is worked off it stores them again."""
    server = NatsServer(tmp_path, config="jetstream { max_memory_store: 1MB }").start()
    try:
        async with open_bridge():
            jetstream = await JetStream.connect(server.url, None, "test")
            await jetstream.ensure_topology()
            payload = "k" * 1000
            refusals: list[str | None] = []
            for batch in range(40):  # 4 MB offered to a 1 MB store
                items = [
                    (f"{payload}:{batch}:{i}", {"Nats-Msg-Id": f"{batch}:{i}"}) for i in range(100)
                ]
                refusals = await jetstream.publish_batch(items)
                if any(refusals):
                    break
            assert any(refusals), "the store never filled"
            assert all("insufficient resources" in why for why in refusals if why is not None), (
                refusals
            )
            assert server.process.running  # refused, not killed

            feed = await jetstream.open_feed()
            with trio.fail_after(10):
                while messages := await feed.fetch(500, 0.5):
                    await jetstream.ack(messages)
            await feed.close()
            # The acks were written last: a publish after a round trip finds the store emptied.
            assert await jetstream.publish_batch([("again", {"Nats-Msg-Id": "again"})]) == [None]
            await jetstream.aclose()
    finally:
        server.stop()
