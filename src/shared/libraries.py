"""Libraries whose private internals the pipeline relies on: what differs is said in one line.

nats-py's (``shared.nats._internals``) and trio-asyncio's (``shared.bridge.loop``) internals
are each touched in one module, which checks at import that every attribute and behaviour it
relies on is there. A version that differs makes the services exit at start-up with one line
naming the library, its version and what differs, instead of misbehaving later.
"""

from __future__ import annotations

from importlib import metadata


class LibraryMismatch(RuntimeError):
    """An installed library's internals differ from those this code was written against."""


def mismatch(distribution: str, problems: list[str]) -> LibraryMismatch | None:
    """The error naming ``distribution``, its installed version and ``problems``; None when
    there are none."""
    if not problems:
        return None
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        version = "(version unknown)"
    return LibraryMismatch(
        f"{distribution} {version} differs from the version this pipeline was tested with: "
        f"{'; '.join(problems)}; install the versions in requirements.lock"
    )


def require(*found: LibraryMismatch | None) -> None:
    """Raise the first of the mismatches ``found`` at import (each module's ``PROBLEM``)."""
    for problem in found:
        if problem is not None:
            raise problem
