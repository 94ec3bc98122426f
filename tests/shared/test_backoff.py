"""The retry loop every start-up step and Redis step of the consumer goes through."""

from __future__ import annotations

import logging

import pytest
import trio

from shared.backoff import Backoff, retrying
from shared.logs import Throttle

log = logging.getLogger("test")


class Flaky:
    """Fails with ``errors`` in turn, then answers 42."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return 42


def test_the_delays_double_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(initial=0.1, cap=0.4)
    delays = [backoff.delay() for _ in range(5)]
    for delay, base in zip(delays, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert base * 0.8 <= delay <= base * 1.2
    backoff.reset()
    assert backoff.delay() <= 0.12


async def test_retrying_until_the_action_answers_logs_each_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    action = Flaky(ConnectionError("refused"), OSError("unreachable"))
    between: list[int] = []

    async def note() -> None:
        between.append(action.calls)

    with trio.fail_after(5):
        result = await retrying(
            action,
            lambda exc: f"cannot do it ({exc}); retrying",
            log,
            backoff=Backoff(initial=0.001, cap=0.002),
            between=note,
        )
    assert result == 42 and action.calls == 3
    assert between == [1, 2]
    assert [r.getMessage() for r in caplog.records] == [
        "cannot do it (refused); retrying",
        "cannot do it (unreachable); retrying",
    ]


async def test_only_the_errors_worth_retrying_are_retried() -> None:
    described: list[Exception] = []

    def failed(exc: Exception) -> str:
        described.append(exc)
        return str(exc)

    fast = Backoff(initial=0.001, cap=0.001)
    with pytest.raises(ValueError, match="bad URL"):
        await retrying(Flaky(ValueError("bad URL")), failed, log, retry_on=(OSError,))
    with pytest.raises(PermissionError):
        await retrying(
            Flaky(OSError("x"), PermissionError("no")),
            failed,
            log,
            backoff=fast,
            retry_on=(OSError,),
            final=(PermissionError,),
        )
    assert [str(e) for e in described] == ["x"]


async def test_a_throttle_quiets_the_log_but_every_failure_is_described(
    caplog: pytest.LogCaptureFixture,
) -> None:
    described: list[Exception] = []

    def failed(exc: Exception) -> str:
        described.append(exc)
        return f"failed: {exc}"

    action = Flaky(*(OSError(str(i)) for i in range(5)))
    await retrying(
        action, failed, log, backoff=Backoff(initial=0.001, cap=0.001), throttle=Throttle(60)
    )
    assert len(described) == 5
    assert [r.getMessage() for r in caplog.records] == ["failed: 0"]
