import logging

import pytest
from redis import exceptions as errors

from shared.redis_outage import RedisOutage, outage_of


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (errors.ConnectionError("Error 111 connecting"), "unreachable"),
        (errors.TimeoutError("Timeout reading"), "unreachable"),
        (ConnectionResetError(104, "reset"), "unreachable"),
        (errors.AuthenticationError("WRONGPASS invalid username-password pair"), "authentication"),
        (errors.NoPermissionError("NOPERM no permission"), "authentication"),
        (errors.BusyLoadingError("LOADING Redis is loading"), "loading"),
        (
            errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
            "out of memory",
        ),
        (errors.ReadOnlyError("You can't write against a read only replica."), "read-only"),
        (errors.ResponseError("MISCONF Redis is configured to save RDB snapshots"), "cannot save"),
    ],
)
def test_outages_are_named(error: Exception, cause: str) -> None:
    problem = outage_of(error)
    assert problem is not None and problem.cause == cause
    assert problem.message


@pytest.mark.parametrize(
    "error", [errors.ResponseError("WRONGTYPE Operation against a key"), ValueError("bug")]
)
def test_other_errors_are_not_outages(error: Exception) -> None:
    assert outage_of(error) is None


def test_an_outage_is_said_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    outage = RedisOutage("generator")
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            outage.report(errors.OutOfMemoryError("OOM command not allowed"))
            outage.clear(wrote=False)  # reads still work while memory is full
        assert outage.as_dict() is not None
        outage.clear(wrote=True)
    assert outage.as_dict() is None
    lines = [record.getMessage() for record in caplog.records]
    assert sum("out of memory" in line for line in lines) == 2, lines  # began, ended
    assert sum("answers again" in line for line in lines) == 1, lines
