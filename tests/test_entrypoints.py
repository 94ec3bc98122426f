"""``--help`` and ``--version`` of the services, as ``python -m`` and as console scripts: they
answer and exit 0 without connecting to Redis or NATS; any other argument is one line and
exit status 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from dev.local_system import service_env
from tests.deploy.manifests import config_variables

BIN = Path(sys.executable).parent

COMMANDS = {
    "python -m generator": ("generator", [sys.executable, "-m", "generator"]),
    "expiry-pipeline-generator": ("generator", [str(BIN / "expiry-pipeline-generator")]),
    "python -m consumer": ("consumer", [sys.executable, "-m", "consumer"]),
    "expiry-pipeline-consumer": ("consumer", [str(BIN / "expiry-pipeline-consumer")]),
}


@pytest.fixture
def servers() -> Iterator[tuple[dict[str, str], socket.socket]]:
    """REDIS_URL and NATS_URL pointing at a socket that listens but never answers, and the
    socket: a connection attempt would wait in its backlog."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "NATS_URL": f"nats://127.0.0.1:{port}"}
        yield env, listener


def run(command: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` with ``args``; a service that started instead would hit the timeout."""
    _, argv = COMMANDS[command]
    return subprocess.run(
        [*argv, *args], env=service_env(env), capture_output=True, text=True, timeout=30
    )


def assert_nothing_connected(listener: socket.socket) -> None:
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_the_service_and_its_variables_and_connects_nowhere(
    command: str, servers: tuple[dict[str, str], socket.socket]
) -> None:
    env, listener = servers
    result = run(command, "--help", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    service, _ = COMMANDS[command]
    assert result.stdout.startswith(f"usage: {command} ")
    assert "--version" in result.stdout
    listed = set(result.stdout.split("environment variables", 1)[1].split()[1:])
    # Exactly what src/shared/config.py reads for this service, no more, no less.
    assert {word for word in listed if word.isupper()} == config_variables()[service]
    assert_nothing_connected(listener)


@pytest.mark.parametrize("command", COMMANDS)
def test_version_prints_the_installed_version(
    command: str, servers: tuple[dict[str, str], socket.socket]
) -> None:
    env, listener = servers
    result = run(command, "--version", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"expiry-pipeline {metadata.version('expiry-pipeline')}\n"
    assert_nothing_connected(listener)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("argument", ["--bogus", "serve", "-x"])
def test_any_other_argument_is_one_line_and_exit_2(
    command: str, argument: str, servers: tuple[dict[str, str], socket.socket]
) -> None:
    env, listener = servers
    result = run(command, argument, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and argument in lines[0], result.stderr
    assert lines[0].startswith(f"{COMMANDS[command][0]}: ")
    assert result.stdout == ""
    assert_nothing_connected(listener)
