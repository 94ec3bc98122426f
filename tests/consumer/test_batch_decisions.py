"""What ``handle_batch`` does with each message of a fetch, with the Redis steps and
JetStream replaced by recorders: which messages reach the handler, which are completed,
acknowledged, delivered again (after how long) or termed. That the Redis steps themselves
count each key once is tested against a real Redis (``test_publishing``, ``test_scripts``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import trio

from consumer import batch
from consumer.batch import Counted, KeepAlive, handle_batch
from consumer.delivery import Delivery
from consumer.handler import ExpiredKey
from consumer.worker_context import WorkerContext
from shared import names
from shared.lease import Lease
from shared.nats import JetStreamMessage


class Recorder:
    """JetStream's settling calls, and the Redis steps, as the batch made them."""

    def __init__(self, states: dict[str, int], ack_fails: bool = False) -> None:
        self.states = states  # key -> what BEGIN says (1 handle, 0 handled already, 2 stale)
        self.ack_fails = ack_fails
        self.calls: list[tuple[str, Any]] = []

    async def ack(self, messages: Sequence[JetStreamMessage]) -> None:
        self.calls.append(("ack", keys(messages)))

    async def nak(self, messages: Sequence[JetStreamMessage], delay: float) -> None:
        self.calls.append(("nak", (keys(messages), delay)))

    async def term(self, messages: Sequence[JetStreamMessage]) -> None:
        self.calls.append(("term", keys(messages)))

    async def in_progress(self, messages: Sequence[JetStreamMessage]) -> None:
        self.calls.append(("in_progress", keys(messages)))

    async def begin(self, ctx: WorkerContext, deliveries: Sequence[Delivery]) -> list[int]:
        self.calls.append(("begin", [d.message.key for d in deliveries]))
        return [self.states.get(d.message.key, 1) for d in deliveries]

    async def complete(
        self, ctx: WorkerContext, done: Sequence[Delivery], ack: Sequence[JetStreamMessage]
    ) -> Counted:
        self.calls.append(("complete", ([d.message.key for d in done], keys(ack))))
        failure = ConnectionError("NATS is not connected") if self.ack_fails else None
        return Counted(len(done), 0, 0, failure)

    async def record_dead_letters(
        self, ctx: WorkerContext, given_up: Sequence[tuple[JetStreamMessage, str]]
    ) -> int:
        self.calls.append(("dead_letters", [(m.key, why) for m, why in given_up]))
        return len(given_up)


def keys(messages: Sequence[JetStreamMessage]) -> list[str]:
    return [m.key for m in messages]


def message(key: str, delivered: int = 1, lease: str | None = None) -> JetStreamMessage:
    member = Lease("7", "", "", key).member if lease is None else lease
    return JetStreamMessage(key=key, lease=member, delivered=delivered, handle=None)


class Redis:
    layout = names.SINGLE_SERVER


async def run_batch(
    recorder: Recorder,
    messages: list[JetStreamMessage],
    monkeypatch: pytest.MonkeyPatch,
    failing: set[str] = frozenset(),  # type: ignore[assignment]
) -> list[str]:
    """Handle ``messages``; the keys the handler was called with."""
    monkeypatch.setattr(batch, "begin", recorder.begin)
    monkeypatch.setattr(batch, "complete", recorder.complete)
    monkeypatch.setattr(batch, "record_dead_letters", recorder.record_dead_letters)
    handled: list[str] = []

    async def handler(event: ExpiredKey) -> None:
        handled.append(event.key)
        if event.key in failing:
            raise RuntimeError("the audit service said no")

    ctx = WorkerContext(
        Redis(),  # type: ignore[arg-type]
        recorder,  # type: ignore[arg-type]
        "c-1",
        handler,
        trio.CapacityLimiter(8),
        30_000,
        5.0,
    )
    await handle_batch(ctx, messages, KeepAlive(ctx))
    return handled


async def test_handled_keys_are_completed_and_acked_with_those_settled_already(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(states={"done-before": 0, "last-test": 2})
    fetched = [message("a"), message("done-before"), message("last-test"), message("b")]
    assert await run_batch(recorder, fetched, monkeypatch) == ["a", "b"]
    assert recorder.calls == [
        ("begin", ["a", "done-before", "last-test", "b"]),
        ("complete", (["a", "b"], ["done-before", "last-test", "a", "b"])),
    ]


async def test_a_batch_with_nothing_left_to_handle_is_only_acked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(states={"x": 0, "y": 2})
    assert await run_batch(recorder, [message("x"), message("y")], monkeypatch) == []
    assert recorder.calls == [("begin", ["x", "y"]), ("ack", ["x", "y"])]


async def test_a_malformed_message_is_a_dead_letter_and_termed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder(states={})
    fetched = [message("ok"), message("bad", lease="not a lease"), message("other", lease="7|||x")]
    assert await run_batch(recorder, fetched, monkeypatch) == ["ok"]
    why = "malformed message: no valid claim"
    assert recorder.calls[:2] == [
        ("dead_letters", [("bad", why), ("other", why)]),
        ("term", ["bad", "other"]),
    ]
    assert recorder.calls[2:] == [("begin", ["ok"]), ("complete", (["ok"], ["ok"]))]


async def test_a_failed_handler_is_retried_later_and_given_up_at_the_last_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert names.MAX_DELIVER == 3
    recorder = Recorder(states={})
    fetched = [message("first", 1), message("second", 2), message("last", names.MAX_DELIVER)]
    failing = {"first", "second", "last"}
    # Each called once; in no set order: once a call takes over a millisecond (a raise on a
    # busy machine can), the rest of the batch runs concurrently.
    handled = await run_batch(recorder, fetched, monkeypatch, failing)
    assert sorted(handled) == ["first", "last", "second"]
    reason = "RuntimeError: the audit service said no"
    assert recorder.calls == [
        ("begin", ["first", "second", "last"]),
        ("dead_letters", [("last", reason)]),
        ("ack", []),
        ("nak", (["first"], batch.RETRY_DELAY_S)),
        ("nak", (["second"], batch.RETRY_DELAY_S * 2)),
        ("term", ["last"]),
    ]


async def test_an_ack_that_fails_after_counting_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The keys are counted; JetStream delivers them again and completing counts nothing."""
    recorder = Recorder(states={}, ack_fails=True)
    with pytest.raises(ConnectionError, match="NATS is not connected"):
        await run_batch(recorder, [message("a")], monkeypatch)
    assert recorder.calls == [("begin", ["a"]), ("complete", (["a"], ["a"]))]
