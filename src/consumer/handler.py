"""The user's work: ``HANDLER=package.module:function``, called once per expired key.

A handler is an ``async def`` (trio) taking one ``ExpiredKey``. It returns: the key is done
(acknowledged and counted). It raises: the key is delivered again after a back-off, and after
the last delivery it becomes a dead letter, recorded and visible, never dropped silently.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from shared.config import ConfigError

DEFAULT_HANDLER = "generator.handler:count"


@dataclass(frozen=True)
class ExpiredKey:
    """One expired key, as a handler sees it."""

    #: The key's name.
    key: str
    #: When its TTL ran out (unix ms), for registered keys; None for keys written with SET.
    deadline_ms: int | None
    #: Which delivery this is: 1 the first time, more after the handler raised.
    attempt: int
    #: The load test the key belongs to, or None outside a test.
    test_id: str | None
    #: Unique per claim: a handler whose side effects must happen once keys them on this.
    claim_id: str


Handler = Callable[[ExpiredKey], Awaitable[None]]

H = TypeVar("H", bound=Handler)


def repeat_safe(handler: H) -> H:
    """Mark ``handler`` as harmless to call twice for one claim (it has no side effect of its
    own, or makes them idempotent on ``claim_id``).

    The pipeline then skips checking each claim's lease before the call: one Redis round trip
    less per batch. Completing a claim stays atomic and counts it once either way.
    """
    handler.repeat_safe = True  # type: ignore[attr-defined]
    return handler


def is_repeat_safe(handler: Handler) -> bool:
    """Whether ``handler`` was marked with ``repeat_safe``."""
    return bool(getattr(handler, "repeat_safe", False))


def load_handler(spec: str) -> Handler:
    """Import the handler named by ``spec`` (``package.module:function``).

    Raises ``ConfigError`` naming ``HANDLER`` when it cannot be imported or is not an async
    function of one argument.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"HANDLER={spec!r} must look like package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"HANDLER={spec!r}: cannot import {module_name}: {exc}") from None
    handler = getattr(module, attribute, None)
    if handler is None:
        raise ConfigError(f"HANDLER={spec!r}: {module_name} has no {attribute}")
    if not inspect.iscoroutinefunction(handler):
        raise ConfigError(f"HANDLER={spec!r} must be an async function (async def)")
    try:
        inspect.signature(handler).bind(None)
    except TypeError:
        raise ConfigError(f"HANDLER={spec!r} must take one argument (the expired key)") from None
    return handler  # type: ignore[no-any-return]
