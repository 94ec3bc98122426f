"""Redis being away is a state, not a crash: what is wrong, said once, until it is over.

``outage_of`` turns an error from redis-py into a named cause (unreachable, out of memory,
authentication, ...) with a message that says what to do; ``RedisOutage`` is the one record of
the current problem that every task of a service reports to, so the log says it once when it
starts and once when it ends, however many tasks keep retrying meanwhile.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TypedDict

from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"
OUT_OF_MEMORY = "out of memory"
AUTHENTICATION = "authentication"
LOADING = "loading"
READ_ONLY = "read-only"
NOT_SAVING = "cannot save"
#: Causes under which Redis still answers reads.
WRITE_PROBLEMS = (OUT_OF_MEMORY, READ_ONLY, NOT_SAVING)


class RedisProblemDocument(TypedDict):
    """Why Redis cannot be used right now, as the status API says it."""

    cause: str
    message: str
    since: float | None


@dataclass(frozen=True)
class Problem:
    """Why Redis cannot be used right now: a short cause and what to do about it."""

    cause: str
    message: str


def outage_of(exc: BaseException) -> Problem | None:
    """The problem ``exc`` shows, when it means Redis is away or refuses writes; else None.

    None means the error is not about Redis's availability (a bug, a wrong type): retrying
    would not help.
    """
    # Order matters: authentication and loading errors are also connection errors.
    if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthorizationError):
        return Problem(
            AUTHENTICATION,
            f"Redis refused the credentials in REDIS_URL ({_first_line(exc)}): fix REDIS_URL "
            "or the Redis user",
        )
    if isinstance(exc, redis_errors.NoPermissionError):
        return Problem(
            AUTHENTICATION,
            f"the Redis user in REDIS_URL may not run a command ({_first_line(exc)}): grant it "
            "or use another user",
        )
    if isinstance(exc, redis_errors.BusyLoadingError):
        return Problem(LOADING, "Redis is loading its data after a restart; waiting for it")
    if isinstance(exc, redis_errors.OutOfMemoryError):
        return Problem(
            OUT_OF_MEMORY,
            "Redis is out of memory (maxmemory reached) and refuses writes: free memory, raise "
            "maxmemory, or stop the test",
        )
    if isinstance(exc, redis_errors.ReadOnlyError):
        return Problem(
            READ_ONLY,
            "Redis is a read-only replica: point REDIS_URL at the primary",
        )
    if isinstance(exc, redis_errors.ResponseError) and str(exc).find("MISCONF") >= 0:
        return Problem(
            NOT_SAVING,
            "Redis refuses writes because it cannot save its data to disk (MISCONF): fix its "
            "disk or its save settings",
        )
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return Problem(UNREACHABLE, f"Redis does not answer ({_first_line(exc)}); waiting for it")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class RedisOutage:
    """The current Redis problem of one process, shared by all its tasks.

    ``report`` when a Redis call fails, ``clear`` when one succeeds. The first report of a
    cause logs one warning; the first success after it logs how long it lasted.
    """

    def __init__(self, where: str) -> None:
        self._where = where
        self.problem: Problem | None = None
        self.since: float | None = None

    def report(self, exc: BaseException) -> Problem | None:
        """Note the failure ``exc``; returns its problem (None: not an availability problem)."""
        problem = outage_of(exc)
        if problem is None:
            return None
        if self.problem is None or self.problem.cause != problem.cause:
            log.warning("%s: %s", self._where, problem.message)
            if self.problem is None:
                self.since = time.time()
        self.problem = problem
        return problem

    def clear(self, wrote: bool = True) -> None:
        """Redis answered: the problem, if there was one, is over.

        A read that succeeds (``wrote=False``) does not end a problem that only refuses writes
        (out of memory, read-only, cannot save).
        """
        if self.problem is not None and not wrote and self.problem.cause in WRITE_PROBLEMS:
            return
        if self.problem is not None:
            lasted = time.time() - (self.since or time.time())
            log.warning(
                "%s: Redis answers again (it was %s for %.1f s)",
                self._where,
                self.problem.cause,
                lasted,
            )
        self.problem = None
        self.since = None

    def as_dict(self) -> RedisProblemDocument | None:
        """The status API's ``redis_problem`` field: None while Redis answers."""
        if self.problem is None:
            return None
        return RedisProblemDocument(
            cause=self.problem.cause, message=self.problem.message, since=self.since
        )
