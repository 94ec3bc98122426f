"""The once-a-second status feed: rates, history for charts, and wake-ups for push clients."""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from generator.status import RUNNING_STATES, Snapshot, read_snapshot, status_document
from shared.bridge import RedisGateway
from shared.logs import Throttle

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
MAX_HISTORY = 3600


class StatusFeed:
    """Samples the test's status every second; push clients wait on ``next_update``."""

    def __init__(self, redis: RedisGateway, auth_required: bool = False) -> None:
        self._redis = redis
        self._auth_required = auth_required
        self._previous: tuple[float, int, int, str | None] | None = None
        self._rates = (0.0, 0.0)
        self._history_test: str | None = None
        self.history: list[dict[str, Any]] = []
        self.latest: dict[str, Any] | None = None
        self._updated = trio.Event()

    async def current(self) -> dict[str, Any]:
        """A fresh status document (rates from the last sample)."""
        snapshot = await read_snapshot(self._redis)
        return self._document(snapshot, time.time())

    def _document(self, snapshot: Snapshot, now: float) -> dict[str, Any]:
        document = status_document(snapshot, self._rates, now)
        document["auth_required"] = self._auth_required
        return document

    async def next_update(self) -> dict[str, Any]:
        """Wait for the next sample and return it."""
        await self._updated.wait()
        assert self.latest is not None
        return self.latest

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample until cancelled."""
        throttle = Throttle(30)
        task_status.started()
        while True:
            try:
                await self.sample()
            except Exception as exc:
                if throttle.allow("sample"):
                    log.warning("cannot read the test status from Redis: %s", exc)
            await trio.sleep(INTERVAL_S)

    async def sample(self) -> dict[str, Any]:
        """Take one sample now and wake the push clients."""
        snapshot = await read_snapshot(self._redis)
        now = time.time()
        test_id = snapshot.test.get("id")
        if self._previous and self._previous[3] == test_id and now > self._previous[0]:
            elapsed = now - self._previous[0]
            self._rates = (
                max(0.0, (snapshot.generated - self._previous[1]) / elapsed),
                max(0.0, (snapshot.consumed - self._previous[2]) / elapsed),
            )
        elif snapshot.test.get("started_at"):
            # First sample of a test: rates since its start, so short tests show them too.
            elapsed = now - float(snapshot.test["started_at"])
            self._rates = (
                (snapshot.generated / elapsed, snapshot.consumed / elapsed)
                if elapsed > 0
                else (0.0, 0.0)
            )
        else:
            self._rates = (0.0, 0.0)
        self._previous = (now, snapshot.generated, snapshot.consumed, test_id)
        document = self._document(snapshot, now)
        self._record_history(document)
        self.latest = document
        self._updated.set()
        self._updated = trio.Event()
        return document

    def _record_history(self, document: dict[str, Any]) -> None:
        test_id = document["test_id"]
        if test_id != self._history_test:
            self._history_test = test_id
            self.history = []
        was_running = bool(self.history) and self.history[-1]["state"] in RUNNING_STATES
        if document["is_running"] or was_running:
            self.history.append(
                {
                    "t": document["elapsed_s"],
                    "state": document["state"],
                    "generated": document["generated"],
                    "consumed": document["consumed"],
                    "generation_rate": round(self._rates[0], 1),
                    "consumption_rate": round(self._rates[1], 1),
                }
            )
            del self.history[:-MAX_HISTORY]
