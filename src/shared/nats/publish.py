"""Publishing batches from trio: one write per batch, JetStream's answers matched to it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import trio

from shared.nats import _internals as internals

PUBLISH_TIMEOUT_S = 5.0


def hpub(subject: str, reply: str, headers: dict[str, str], payload: bytes) -> bytes:
    """The protocol line of a publish with headers (as nats-py builds it)."""
    header = b"NATS/1.0\r\n" + b"".join(
        b"%s: %s\r\n" % (name.encode(), value.encode()) for name, value in headers.items()
    )
    header += b"\r\n"
    size = len(header)
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        size,
        size + len(payload),
        header,
        payload,
    )


@dataclass
class _Batch:
    id: int
    #: Per message: None once JetStream stored it, else why it is not stored (yet).
    refused: list[str | None]
    waiting: int
    answered: trio.Event


class PubAcks:
    """JetStream's answers to publishes, on one wildcard inbox, matched to their batches.

    Runs as nats-py reads each answer (inside the trio run): no asyncio task per answer.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._batches: dict[int, _Batch] = {}
        self._next_id = 0

    @classmethod
    async def open(cls, nc: Any) -> PubAcks:
        """Subscribe to a fresh wildcard inbox for the answers."""
        inbox = nc.new_inbox()
        acks = cls(f"{inbox}.")
        subscription = await nc.subscribe(f"{inbox}.>", pending_bytes_limit=512 * 1024 * 1024)
        internals.hand_off(subscription, acks._answer)
        return acks

    def expect(self, count: int) -> _Batch:
        """A batch of ``count`` publishes about to be written."""
        self._next_id += 1
        unanswered = f"no answer from JetStream within {PUBLISH_TIMEOUT_S:.0f} s"
        batch = _Batch(self._next_id, [unanswered] * count, count, trio.Event())
        self._batches[batch.id] = batch
        return batch

    def forget(self, batch: _Batch) -> None:
        """Answers still to come for ``batch`` are ignored."""
        self._batches.pop(batch.id, None)

    def _answer(self, message: Any) -> None:
        batch_id, _, index = message.subject[len(self.prefix) :].partition(".")
        try:
            batch = self._batches.get(int(batch_id))
            at = int(index)
        except ValueError:
            return
        if batch is None or not 0 <= at < len(batch.refused) or batch.refused[at] is None:
            return
        batch.refused[at] = _refusal(message)
        batch.waiting -= 1
        if batch.waiting == 0:
            batch.answered.set()


def _refusal(message: Any) -> str | None:
    """None when JetStream's answer says it stored the message (or had it: a duplicate), else
    what it said."""
    status = (message.headers or {}).get("Status")
    if status:
        return f"no stream takes the subject (status {status})"
    try:
        answer = json.loads(message.data)
    except ValueError:
        return f"an answer that is not JSON: {message.data[:80]!r}"
    if not isinstance(answer, dict):
        return f"an unexpected answer: {answer!r:.80}"
    error = answer.get("error")
    if error is not None:
        if isinstance(error, dict):
            return f"{error.get('description', error)} (JetStream error {error.get('err_code')})"
        return str(error)
    return None if "seq" in answer else f"an answer without a sequence: {answer!r:.80}"
