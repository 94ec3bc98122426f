"""The private internals of nats-py and trio-asyncio that the pipeline touches: present in
the installed versions, and a version whose internals differ is named in one line, by the
check and by the services at start-up (which then exit before connecting anywhere)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import trio_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext
from redis.exceptions import ResponseError
from trio_asyncio._base import BaseTrioEventLoop

from dev.local_system import service_env
from shared.bridge import loop
from shared.libraries import mismatch
from shared.nats import _internals
from shared.redis import _internals as redis_internals

BIN = Path(sys.executable).parent


def test_the_installed_versions_have_every_internal_used() -> None:
    assert _internals.check() == []
    assert _internals.PROBLEM is None
    assert loop.check() == []
    assert loop.PROBLEM is None and loop.BATCHED_CALLBACKS
    assert redis_internals.check() == []
    assert redis_internals.PROBLEM is None


def _no_pending_queue(self: Subscription, *args: Any, **kwargs: Any) -> None:
    self._pending_size = 0


async def _api_request_gone(*args: Any, **kwargs: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("owner", "attribute", "replacement", "reported"),
    [
        (Client, "_process_msg", lambda self: None, "Client._process_msg no longer does"),
        (Subscription, "__init__", _no_pending_queue, "Subscription has no _pending_queue"),
        (Msg, "ack", lambda self: None, "Msg.ack no longer sets _ackd"),
        (JetStreamContext, "_api_request", None, "JetStreamContext has no async _api_request()"),
    ],
)
def test_a_changed_nats_py_internal_is_named_with_the_version(
    monkeypatch: pytest.MonkeyPatch, owner: type, attribute: str, replacement: Any, reported: str
) -> None:
    monkeypatch.setattr(owner, attribute, replacement)
    problems = _internals.check()
    assert any(reported in problem for problem in problems), problems
    error = mismatch("nats-py", problems)
    assert error is not None
    assert str(error).startswith(f"nats-py {metadata.version('nats-py')} differs")
    assert "install the versions in requirements.lock" in str(error)
    assert "\n" not in str(error)


def test_a_changed_trio_asyncio_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trio_asyncio, "__version__", "0.99.0")
    monkeypatch.setattr(BaseTrioEventLoop, "_main_loop_one", lambda self, no_wait=False: None)
    problems = loop.check()
    assert any("0.15, 0.16" in problem for problem in problems), problems
    assert "BaseTrioEventLoop has no async _main_loop_one()" in problems


def test_a_redis_py_that_maps_an_error_reply_otherwise_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The trio-native connections raise what redis-py's parser makes of an error reply: a
    redis-py that no longer makes an ``OutOfMemoryError`` of OOM would hide the outage."""
    monkeypatch.setattr(
        redis_internals._Parser, "parse_error", staticmethod(lambda reply: ResponseError(reply))
    )
    problems = redis_internals.check()
    assert problems == [
        f"_parsers.BaseParser.parse_error makes a ResponseError of {code}, not a {kind}"
        for code, kind in [
            ("OOM", "OutOfMemoryError"),
            ("NOSCRIPT", "NoScriptError"),
            ("LOADING", "BusyLoadingError"),
            ("READONLY", "ReadOnlyError"),
            ("NOAUTH", "AuthenticationError"),
            ("EXECABORT", "ExecAbortError"),
        ]
    ]
    monkeypatch.setattr(redis_internals, "_Parser", None)
    assert redis_internals.check()[0].startswith("_parsers.BaseParser.parse_error cannot be used")


@pytest.mark.parametrize("service", ["consumer", "generator"])
def test_a_service_on_a_changed_nats_py_exits_with_one_line(service: str, tmp_path: Path) -> None:
    """A nats-py whose messages no longer record their ack (as if upgraded): the service says
    so in one line and exits 1, before connecting (the URLs point at nothing)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import nats.aio.msg\n\n"
        "async def ack(self):\n"
        "    await self._client.publish(self.reply)\n\n"
        "nats.aio.msg.Msg.ack = ack\n"
    )
    env = service_env({"REDIS_URL": "redis://127.0.0.1:1/0", "NATS_URL": "nats://127.0.0.1:1"})
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = subprocess.run(
        [str(BIN / f"expiry-pipeline-{service}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    version = metadata.version("nats-py")
    assert lines[0] == (
        f"{service}: cannot start: nats-py {version} differs from the version this pipeline was "
        "tested with: Msg.ack no longer sets _ackd; install the versions in requirements.lock"
    )
