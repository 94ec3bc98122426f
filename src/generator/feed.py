"""The once-a-second status feed: rates, history for charts, and wake-ups for push clients."""

from __future__ import annotations

import logging
import time

import trio

from generator.documents import HistorySampleDocument, StatusDocument
from generator.runner import TestRunner
from generator.status import RUNNING_STATES, Snapshot, read_snapshot, status_document
from shared.bridge import RedisGateway
from shared.redis_outage import outage_of

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
MAX_HISTORY = 3600
_EMPTY = Snapshot(
    test={},
    generated=0,
    consumed=0,
    unique=0,
    pending=0,
    inflight=0,
    duplicates=0,
    dead_letters=0,
    recovered=0,
)


class StatusFeed:
    """Samples the test's status every second; push clients wait on ``next_update``.

    While Redis is away the feed goes on: each sample repeats the last figures, with the
    runner's own view of its test and ``redis_problem`` naming what is wrong.
    """

    def __init__(
        self, redis: RedisGateway, runner: TestRunner, auth_required: bool = False
    ) -> None:
        self._redis = redis
        self._runner = runner
        self._auth_required = auth_required
        self._previous: tuple[float, int, int, str | None] | None = None
        self._rates = (0.0, 0.0)
        self._history_test: str | None = None
        self.history: list[HistorySampleDocument] = []
        self.latest: StatusDocument | None = None
        self._updated = trio.Event()

    async def current(self, offline: bool = True) -> StatusDocument:
        """A fresh status document (rates from the last sample).

        While Redis does not answer: the last figures with ``redis_problem`` set, or (with
        ``offline=False``) the Redis error.
        """
        try:
            snapshot = await read_snapshot(self._redis)
        except Exception as exc:
            if not offline or self._runner.outage.report(exc) is None:
                raise
            return self._offline_document()
        self._runner.outage.clear(wrote=False)
        document = self._document(snapshot, time.time())
        document["rate_sample"] = None
        return document

    def _document(self, snapshot: Snapshot, now: float) -> StatusDocument:
        document = status_document(snapshot, self._rates, now, self._auth_required)
        self._runner.overlay(document)
        document["redis_problem"] = self._runner.outage.as_dict()
        return document

    def _offline_document(self) -> StatusDocument:
        """The last sample's figures, corrected by the runner, naming the Redis problem."""
        if self.latest is not None:
            document = self.latest.copy()
        else:
            document = status_document(_EMPTY, (0.0, 0.0), time.time(), self._auth_required)
        document["rate_sample"] = None
        self._runner.overlay(document)
        document["redis_problem"] = self._runner.outage.as_dict()
        return document

    async def next_update(self) -> StatusDocument:
        """Wait for the next sample and return it."""
        await self._updated.wait()
        assert self.latest is not None
        return self.latest

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample until cancelled; a state change of the runner samples at once."""
        task_status.started()
        while True:
            changed = self._runner.changed
            try:
                await self.sample()
            except Exception as exc:
                if outage_of(exc) is None:
                    log.exception("cannot take a status sample")
                else:
                    self._runner.outage.report(exc)
                self._publish(self._offline_document())
            with trio.move_on_after(INTERVAL_S):
                await changed.wait()

    async def sample(self) -> StatusDocument:
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
        self._runner.outage.clear(wrote=False)
        document = self._document(snapshot, now)
        document["rate_sample"] = self._record_history(document)
        self._publish(document)
        return document

    def _publish(self, document: StatusDocument) -> None:
        self.latest = document
        self._updated.set()
        self._updated = trio.Event()

    def _record_history(self, document: StatusDocument) -> HistorySampleDocument | None:
        """Add the sample to the history while a test runs (and once after); return it.

        A sample carries the rates measured over its own interval, never the test's averages
        (an ended test's status shows those), so a chart of samples has no spike at the end.
        """
        test_id = document["test_id"]
        if test_id != self._history_test:
            self._history_test = test_id
            self.history = []
        was_running = bool(self.history) and self.history[-1]["state"] in RUNNING_STATES
        if not (document["is_running"] or was_running):
            return None
        if self.history and document["elapsed_s"] <= self.history[-1]["t"]:
            return None
        sample = HistorySampleDocument(
            t=document["elapsed_s"],
            state=document["state"],
            generated=document["generated"],
            consumed=document["consumed"],
            generation_rate=round(self._rates[0], 1),
            consumption_rate=round(self._rates[1], 1),
        )
        self.history.append(sample)
        del self.history[:-MAX_HISTORY]
        return sample
