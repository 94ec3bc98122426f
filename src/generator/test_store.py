"""The record of the current load test in Redis (``test:current``): its one writer.

A hash, copied into every slot group on a cluster (``KeyLayout.on_test_current``) so that the
claim scripts read it next to the keys they claim. Its fields:

- ``id``, ``key_prefix`` and the configuration (``num_keys``, ``key_delay``, ``key_ttl``,
  ``dedup_window``), written when the test starts;
- ``state`` (``starting``, ``generating``, ``draining``, then how it ended), ``started_at``,
  ``generated_final`` and ``generation_ended_at`` (once every key is written),
  ``finished_at``, ``reason`` and ``verdict`` (JSON) at the end.

The status (``generator.status``) and each batch of keys read it in their own round trips.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from generator.documents import VerdictDocument
from generator.validation import TestConfig
from shared import names
from shared.bridge import RedisGateway
from shared.bridge.redis_io import Command


def config_of(test: dict[str, str]) -> TestConfig | None:
    """The configuration recorded in a ``test:current`` hash, if it is complete."""
    try:
        return TestConfig(**{field: int(test[field]) for field in TestConfig().as_dict()})
    except (KeyError, ValueError):
        return None


def _flatten(fields: dict[str, str | int]) -> list[str | int]:
    flat: list[str | int] = []
    for name, value in fields.items():
        flat += [name, value]
    return flat


class TestStore:
    """Reads and writes ``test:current``."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, redis: RedisGateway) -> None:
        self._redis = redis

    async def read(self) -> dict[str, str]:
        """The whole record (empty when there is none)."""
        test: dict[str, str] = await self._redis.call("HGETALL", names.TEST_CURRENT)
        return test or {}

    async def current_id(self) -> str | None:
        """The current test's id."""
        current: str | None = await self._redis.call("HGET", names.TEST_CURRENT, "id")
        return current

    def begin(self, test_id: str, config: TestConfig) -> list[Command]:
        """The commands making ``test_id`` the current test, ``starting``, and nothing else
        of the last one."""
        return self._replace(
            {
                "id": test_id,
                "state": "starting",
                "key_prefix": names.GEN_KEY_PREFIX,
                **config.as_dict(),
            }
        )

    async def generating(self) -> None:
        """Redis is cleared: the keys are being written from now."""
        await self._set({"state": "generating", "started_at": repr(time.time())})

    async def draining(self, written: int) -> None:
        """Every key is written (``written`` of them): waiting for their consumption."""
        await self._set(
            {
                "state": "draining",
                "generated_final": written,
                "generation_ended_at": repr(time.time()),
            }
        )

    async def interrupted(self, reason: str) -> None:
        """The test a generator restart left running."""
        await self._set({"state": "interrupted", "reason": reason})

    async def end(
        self,
        state: str,
        finished_at: float | None,
        reason: str | None,
        verdict: VerdictDocument | None,
    ) -> None:
        """How the test ended."""
        await self._set(_end_fields(state, finished_at, reason, verdict))

    async def rewrite(
        self,
        test_id: str,
        started_at: float | None,
        config: TestConfig | None,
        ended: tuple[str, float | None, str | None, VerdictDocument | None],
    ) -> None:
        """The whole record of a test whose record Redis lost (a restart without its data),
        with how it ended; what Redis kept of it since (keys written after the restart)
        would contradict the record, and is cleared."""
        layout = self._redis.layout
        fields: dict[str, str | int] = {
            "id": test_id,
            "started_at": repr(started_at),
            **(config.as_dict() if config else {}),
            **_end_fields(*ended),
        }
        await self._redis.pipeline([*self._replace(fields), *layout.unlink(layout.per_test_keys())])

    def _replace(self, fields: dict[str, str | int]) -> list[Command]:
        layout = self._redis.layout
        return [
            *layout.on_test_current("DEL"),
            *layout.on_test_current("HSET", *_flatten(fields)),
        ]

    async def _set(self, fields: dict[str, str | int]) -> None:
        commands: Sequence[Command] = self._redis.layout.on_test_current("HSET", *_flatten(fields))
        await self._redis.pipeline(commands)


def _end_fields(
    state: str, finished_at: float | None, reason: str | None, verdict: VerdictDocument | None
) -> dict[str, str | int]:
    fields: dict[str, str | int] = {"state": state, "finished_at": repr(finished_at)}
    if reason:
        fields["reason"] = reason
    if verdict is not None:
        fields["verdict"] = json.dumps(verdict)
    return fields
