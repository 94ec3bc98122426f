"""``expiry-pipeline`` as a process: ``--help`` and ``--version`` exit 0 without asking the
generator anything; every misuse is one line on stderr and exit status 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from client.cli import EXIT_USAGE

COMMANDS = {
    "expiry-pipeline": [str(Path(sys.executable).parent / "expiry-pipeline")],
    "python -m client": [sys.executable, "-m", "client"],
}


@pytest.fixture
def generator() -> Iterator[socket.socket]:
    """A socket that listens but never answers, where EXPIRY_PIPELINE_URL points: a request
    would wait in its backlog."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


def run(
    listener: socket.socket, *args: str, command: str = "expiry-pipeline"
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["EXPIRY_PIPELINE_URL"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
    return subprocess.run(
        [*COMMANDS[command], *args], env=env, capture_output=True, text=True, timeout=30
    )


def assert_nothing_connected(listener: socket.socket) -> None:
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_commands_and_asks_nothing(command: str, generator: socket.socket) -> None:
    result = run(generator, "--help", command=command)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: expiry-pipeline ")
    for word in ("run", "status", "stop", "--url", "--version", "EXPIRY_PIPELINE_URL"):
        assert word in result.stdout
    assert_nothing_connected(generator)


def test_a_commands_help_shows_its_options(generator: socket.socket) -> None:
    result = run(generator, "run", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: expiry-pipeline run ")
    assert "--keys" in result.stdout and "--timeout" in result.stdout
    assert_nothing_connected(generator)


@pytest.mark.parametrize("command", COMMANDS)
def test_version_prints_the_installed_version(command: str, generator: socket.socket) -> None:
    result = run(generator, "--version", command=command)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"expiry-pipeline {metadata.version('expiry-pipeline')}\n"
    assert_nothing_connected(generator)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "no command"),
        (["serve"], "'serve'"),
        (["--bogus"], "--bogus"),
        (["--bogus", "status"], "--bogus"),
        (["status", "--bogus"], "--bogus"),
        (["run", "--keys", "5", "extra"], "extra"),
        (["run", "--keys"], "--keys"),
        (["run", "--keys", "many"], "'many'"),
        (["run", "--timeout", "nan"], "--timeout"),
        (["run", "--timeout", "-1"], "--timeout"),
        (["status", "--url"], "--url"),
        (["--url", "localhost:30080", "status"], "--url"),
        (["--url", "http://[::1", "status"], "--url"),
        (["--url", "http://localhost:99999", "stop"], "--url"),
    ],
)
def test_every_misuse_is_one_line_and_exit_2(
    args: list[str], named: str, generator: socket.socket
) -> None:
    result = run(generator, *args)
    assert result.returncode == EXIT_USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("expiry-pipeline") and named in lines[0], lines[0]
    assert result.stdout == ""
    assert_nothing_connected(generator)


def test_a_bad_url_in_the_environment_is_named_too() -> None:
    env = {**os.environ, "EXPIRY_PIPELINE_URL": "localhost:30080"}
    result = subprocess.run(
        [*COMMANDS["expiry-pipeline"], "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == EXIT_USAGE
    assert "EXPIRY_PIPELINE_URL" in result.stderr and len(result.stderr.splitlines()) == 1
