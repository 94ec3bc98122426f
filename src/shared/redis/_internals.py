"""Every access to redis-py's private internals, in one place, checked at import.

The trio-native connections (``shared.redis.script_lines``) read replies with hiredis
themselves, and turn an error reply into the exception redis-py would raise for it (OOM,
LOADING, READONLY, NOSCRIPT, NOAUTH… each has its class, which the outage reports and the
callers tell apart). redis-py keeps that mapping in its private ``_parsers`` module:
``error_of`` is the one use of it, and ``PROBLEM`` says when the installed redis-py no longer
maps the replies the pipeline tells apart (None when it does).
"""

from __future__ import annotations

from typing import Any

from redis import exceptions

from shared.libraries import LibraryMismatch, mismatch

_Parser: Any
try:
    from redis._parsers import BaseParser as _Parser
except ImportError:  # moved: ``check`` says so
    _Parser = None

DISTRIBUTION = "redis"

#: Error replies the pipeline tells apart, and the class redis-py raises for each.
EXPECTED = {
    "OOM command not allowed when used memory > 'maxmemory'.": exceptions.OutOfMemoryError,
    "NOSCRIPT No matching script.": exceptions.NoScriptError,
    "LOADING Redis is loading the dataset in memory": exceptions.BusyLoadingError,
    "READONLY You can't write against a read only replica.": exceptions.ReadOnlyError,
    "NOAUTH Authentication required.": exceptions.AuthenticationError,
    "EXECABORT Transaction discarded because of previous errors.": exceptions.ExecAbortError,
    "ERR Function not found": exceptions.ResponseError,
}


def error_of(reply: str) -> Exception:
    """The exception redis-py raises for the error reply ``reply``."""
    error: Exception = _Parser.parse_error(reply)
    return error


def check() -> list[str]:
    """What differs, in the installed redis-py, from the internals used above."""
    problems: list[str] = []
    try:
        for reply, kind in EXPECTED.items():
            made = type(error_of(reply))
            if made is not kind:
                code = reply.split()[0]
                problems.append(
                    f"_parsers.BaseParser.parse_error makes a {made.__name__} of {code}, "
                    f"not a {kind.__name__}"
                )
    except Exception as exc:  # the module or the method moved
        problems.append(f"_parsers.BaseParser.parse_error cannot be used: {exc!r}")
    return problems


#: What differs in the installed redis-py, found at import; None when nothing does.
PROBLEM: LibraryMismatch | None = mismatch(DISTRIBUTION, check())
