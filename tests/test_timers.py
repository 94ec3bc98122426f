"""Keys as timers: armed, re-armed, moved, cancelled, as an application does it, against a real
fleet (2 consumers, both listening), real Redis and real NATS JetStream.

Every check is key by key: the handler records each call (``dev.timer_handler``), so a key
handled twice, or handled while it was cancelled, shows.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dev.local_system import LocalSystem, wait_until
from dev.timer_handler import HANDLED
from shared import names
from tests.support import REPO, consumer_metrics, prometheus_value, redis_client

SWEEP_GRACE_MS = 500
SWEEP_INTERVAL_MS = 200


@pytest.fixture(scope="module")
def timers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    system = LocalSystem(
        tmp_path_factory.mktemp("timers"),
        consumers=2,
        env={
            "KEY_PATTERNS": "timer:*",
            "HANDLER": "dev.timer_handler:record",
            "PYTHONPATH": str(REPO),
            "SWEEP_GRACE_MS": str(SWEEP_GRACE_MS),
            "SWEEP_INTERVAL_MS": str(SWEEP_INTERVAL_MS),
        },
    ).start()
    yield system
    system.stop()


def handled(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    """Every handler call so far for keys starting with ``prefix``."""
    records = [json.loads(r) for r in client.lrange(HANDLED, 0, -1)]
    return [r for r in records if r["key"].startswith(prefix)]


def wait_handled(client: redis.Redis, prefix: str, count: int, timeout: float = 30) -> None:
    wait_until(
        lambda: len(handled(client, prefix)) >= count, timeout, f"{count} {prefix}* handled", 0.05
    )


def settle(client: redis.Redis, after_ms: int) -> None:
    """Wait until the sweepers have had their chance at every deadline up to ``after_ms``
    (unix ms), and until no claim is in flight: what is handled by then is all there is."""
    wait_ms = after_ms + SWEEP_GRACE_MS + 3 * SWEEP_INTERVAL_MS - time.time() * 1000
    time.sleep(max(0.0, wait_ms / 1000))
    wait_until(lambda: client.zcard(names.EXPIRY_LEASES) == 0, 10, "no claim in flight")


def register(client: redis.Redis, key: str, ttl_ms: int) -> int:
    return int(client.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, "v", ttl_ms))


@pytest.mark.e2e
def test_a_key_written_again_after_it_fired_is_handled_again_within_the_dedup_window(
    timers: LocalSystem,
) -> None:
    client = redis_client(timers)
    plain = [f"timer:rearm:p{i}" for i in range(50)]
    registered = [f"timer:rearm:r{i}" for i in range(50)]
    for round_ in (1, 2):  # the second round within DEDUP_WINDOW_MS (5 s) of the first
        pipe = client.pipeline(transaction=False)
        for key in plain:
            pipe.set(key, round_, px=100)
        for key in registered:
            pipe.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, round_, 100)
        pipe.execute()
        wait_handled(client, "timer:rearm:", 100 * round_)
        time.sleep(0.3)
    settle(client, int(time.time() * 1000))
    records = handled(client, "timer:rearm:")
    assert Counter(r["key"] for r in records) == {key: 2 for key in plain + registered}
    assert len({r["claim_id"] for r in records}) == 200
    # Each instance is known by its own deadline: the fleet heard every key being armed.
    assert len({(r["key"], r["deadline_ms"]) for r in records}) == 200
    assert all(r["deadline_ms"] for r in records)


@pytest.mark.e2e
def test_deleted_persisted_and_cancelled_keys_are_never_handled(timers: LocalSystem) -> None:
    client = redis_client(timers)
    groups = ("del", "unlink", "persist", "set", "cancel", "control")
    keys = {group: [f"timer:gone:{group}:{i}" for i in range(20)] for group in groups}
    pipe = client.pipeline(transaction=False)
    for group_keys in keys.values():
        for i, key in enumerate(group_keys):
            if i % 2:
                pipe.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, "v", 800)
            else:
                pipe.set(key, "v", px=800)
    pipe.execute()
    deadline = int(time.time() * 1000) + 800
    time.sleep(0.2)
    pipe = client.pipeline(transaction=False)
    for key in keys["del"]:
        pipe.delete(key)
    for key in keys["unlink"]:
        pipe.unlink(key)
    for key in keys["persist"]:
        pipe.persist(key)
    for key in keys["set"]:
        pipe.set(key, "no ttl now")
    for key in keys["cancel"]:
        pipe.fcall(names.FN_CANCEL, 2, key, names.EXPIRY_DUE)
    answers = pipe.execute()[-len(keys["cancel"]) :]
    assert answers == [1] * len(keys["cancel"])  # cancelled before they fired
    wait_handled(client, "timer:gone:control:", 20)
    settle(client, deadline)
    records = handled(client, "timer:gone:")
    assert sorted(r["key"] for r in records) == sorted(keys["control"])
    # What lives on without a TTL is still there, and nothing of them is left registered.
    assert client.exists(*keys["persist"], *keys["set"]) == 40
    gone = [key for group in ("del", "unlink", "persist", "set", "cancel") for key in keys[group]]
    assert all(client.zscore(names.EXPIRY_DUE, key) is None for key in gone)


@pytest.mark.e2e
def test_a_moved_deadline_fires_once_at_the_new_time_never_the_old(timers: LocalSystem) -> None:
    client = redis_client(timers)
    shorter = [f"timer:move:short:{i}" for i in range(20)]
    longer = [f"timer:move:long:{i}" for i in range(20)]
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(shorter):
        if i % 2:
            pipe.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, "v", 5000)
        else:
            pipe.set(key, "v", px=5000)
    for i, key in enumerate(longer):
        if i % 2:
            pipe.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, "v", 300)
        else:
            pipe.set(key, "v", px=300)
    pipe.execute()
    pipe = client.pipeline(transaction=False)
    for key in shorter:
        pipe.pexpire(key, 400)
        pipe.pexpiretime(key)
    for i, key in enumerate(longer):
        if i % 2:
            pipe.pexpire(key, 1500)
        else:
            pipe.set(key, "v", px=1500)  # a new SET with a TTL moves it too
        pipe.pexpiretime(key)
    replies = pipe.execute()
    new_deadlines = dict(zip(shorter + longer, replies[1::2], strict=True))
    wait_handled(client, "timer:move:", 40)
    settle(client, max(new_deadlines.values()))
    records = handled(client, "timer:move:")
    assert Counter(r["key"] for r in records) == {key: 1 for key in shorter + longer}
    for record in records:
        # Handled for the deadline it was moved to, and not before it.
        assert record["deadline_ms"] == new_deadlines[record["key"]]
        assert record["handled_at_ms"] >= record["deadline_ms"]


@pytest.mark.e2e
def test_cancel_and_reschedule_answer_definitely_even_racing_the_claim(
    timers: LocalSystem,
) -> None:
    client = redis_client(timers)
    # Too late: the key fired and was handled.
    register(client, "timer:answer:fired", 50)
    wait_handled(client, "timer:answer:fired", 1)
    assert client.fcall(names.FN_CANCEL, 2, "timer:answer:fired", names.EXPIRY_DUE) == 0
    assert client.fcall(names.FN_RESCHEDULE, 2, "timer:answer:fired", names.EXPIRY_DUE, 500) == 0
    # Rescheduled earlier and later: handled once, at the deadline it was given.
    register(client, "timer:answer:earlier", 5000)
    register(client, "timer:answer:later", 200)
    earlier = client.fcall(names.FN_RESCHEDULE, 2, "timer:answer:earlier", names.EXPIRY_DUE, 300)
    later = client.fcall(names.FN_RESCHEDULE, 2, "timer:answer:later", names.EXPIRY_DUE, 1200)
    # Cancels racing the expiry: each answer is the truth, whichever side wins.
    racing = [f"timer:answer:race:{i}" for i in range(200)]
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(racing):
        pipe.fcall(names.FN_REGISTER, 2, key, names.EXPIRY_DUE, "v", 200 + 10 * i)
    deadlines = [int(d) for d in pipe.execute()]
    answers: dict[str, int] = {}
    for i, key in enumerate(racing):
        # Each cancel lands up to 20 ms before or after its key's deadline.
        time.sleep(max(0.0, (deadlines[i] + i % 41 - 20) / 1000 - time.time()))
        answers[key] = int(client.fcall(names.FN_CANCEL, 2, key, names.EXPIRY_DUE))
    too_late = {key for key, answer in answers.items() if answer == 0}
    assert 0 < len(too_late) < len(racing), "the cancels did not race the expiries"
    wait_handled(client, "timer:answer:", 1 + 2 + len(too_late))
    settle(client, int(time.time() * 1000))
    records = handled(client, "timer:answer:")
    counts = Counter(r["key"] for r in records)
    named = ("timer:answer:fired", "timer:answer:earlier", "timer:answer:later")
    assert [counts[key] for key in named] == [1, 1, 1]
    assert sum(counts.values()) == 3 + len(too_late)
    by_key = {r["key"]: r for r in records}
    assert by_key["timer:answer:earlier"]["deadline_ms"] == earlier
    assert by_key["timer:answer:later"]["deadline_ms"] == later
    assert by_key["timer:answer:later"]["handled_at_ms"] >= later
    for key in racing:
        assert counts[key] == (1 if key in too_late else 0), key


@pytest.mark.e2e
def test_keys_armed_while_the_fleet_listened_survive_a_fleet_restart(
    timers: LocalSystem,
) -> None:
    """Plain keys too: the fleet registered their deadlines when it heard them armed."""
    client = redis_client(timers)
    keys = [f"timer:restart:{i}" for i in range(100)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, "v", px=1500)
    pipe.execute()
    wait_until(
        lambda: all(client.zscore(names.EXPIRY_DUE, key) for key in keys), 10, "keys registered"
    )
    for process in timers.consumer_processes:
        process.kill()
    wait_until(lambda: client.exists(*keys) == 0, 10, "every key expired while the fleet is down")
    for index in range(len(timers.consumer_processes)):
        timers.restart_consumer(index, wait=False)
    timers.wait_ready()
    wait_handled(client, "timer:restart:", 100)
    settle(client, int(time.time() * 1000))
    records = handled(client, "timer:restart:")
    assert Counter(r["key"] for r in records) == {key: 1 for key in keys}


@pytest.mark.e2e
def test_registered_keys_are_claimed_at_their_deadline_though_redis_never_announces_them(
    tmp_path: Path,
) -> None:
    """With Redis's active expiry off and nobody reading the keys, Redis would announce none of
    them, and the sweepers wait a minute: the lead's timers (opted in with TIMER_LOOKAHEAD_MS)
    claim each at its deadline, once, and each stage's lateness is counted."""
    system = LocalSystem(
        tmp_path,
        consumers=2,
        redis_args=("--enable-debug-command", "yes"),
        env={
            "KEY_PATTERNS": "timer:*",
            "HANDLER": "dev.timer_handler:record",
            "PYTHONPATH": str(REPO),
            "SWEEP_GRACE_MS": "60000",
            "TIMER_LOOKAHEAD_MS": "100",
        },
    ).start()
    try:
        client = redis_client(system)
        client.execute_command("DEBUG", "SET-ACTIVE-EXPIRE", "0")
        keys = [f"timer:due:{i}" for i in range(60)]
        deadlines = {key: register(client, key, 100 + 10 * i) for i, key in enumerate(keys)}
        wait_handled(client, "timer:due:", len(keys), timeout=20)
        time.sleep(0.5)  # a key handled twice would show by now
        records = handled(client, "timer:due:")
        assert Counter(r["key"] for r in records) == {key: 1 for key in keys}
        for record in records:
            assert record["deadline_ms"] == deadlines[record["key"]]
            assert record["handled_at_ms"] >= record["deadline_ms"]
        texts = [consumer_metrics(system, i) for i in range(len(system.consumer_processes))]
        for stage in ("claimed", "published", "pulled", "started", "completed"):
            counted = sum(
                prometheus_value(text, "expiry_pipeline_timer_lateness_seconds_count", stage=stage)
                for text in texts
            )
            assert counted == len(keys), stage
    finally:
        system.stop()
