"""``expiry-pipeline`` against the real local system: the exit status is a CI gate."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path

import pytest
import redis

from client.cli import (
    EXIT_API,
    EXIT_INTERRUPTED,
    EXIT_NOT_EXACTLY_ONCE,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    main,
)
from dev.local_system import LocalSystem, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def test_run_exits_0_when_every_key_was_consumed_once(
    local_system: LocalSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--url", local_system.base_url, "--json", "run", "--keys", "300", "--delay", "0"]
    assert main([*argv, "--ttl", "50"]) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["exactly_once"] is True
    assert out["verdict"]["expected"] == out["verdict"]["consumed"] == 300
    assert out["latency_ms"]["count"] == 300
    # The same test, as the generator reports it.
    assert local_system.status()["test_id"] == out["test_id"]


def test_run_prints_the_verdict_and_delay_for_people(
    local_system: LocalSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    # Options after the command work as well as before it.
    assert main(["run", "--keys", "200", "--delay", "0", "--url", local_system.base_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("PASS: every key consumed exactly once")
    assert "200 generated, 200 consumed, 0 missing, 0 duplicates" in out
    assert "p50" in out and "p99" in out


def test_status_and_stop(local_system: LocalSystem, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", local_system.base_url, "--json", "status"]) == EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == local_system.status()["state"]
    assert main(["status", "--url", local_system.base_url]) == EXIT_OK
    assert capsys.readouterr().out.startswith("test ")
    assert main(["status", "--json", "--url", local_system.base_url]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["test_id"] == status["test_id"]
    assert main(["--url", local_system.base_url, "stop"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == "stop: idle"


def test_a_bad_value_names_the_flag(
    local_system: LocalSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--url", local_system.base_url, "run", "--keys", "0"]) == EXIT_API
    assert capsys.readouterr().err.startswith("expiry-pipeline: --keys: num_keys must be")


def test_an_unreachable_generator_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", f"http://127.0.0.1:{free_port()}", "status"]) == EXIT_API
    err = capsys.readouterr().err
    assert "cannot reach the generator" in err and "--url" in err


@contextmanager
def ctrl_c_heard_by_children() -> Iterator[None]:
    """Processes started inside hear SIGINT as from a terminal, whatever this one inherited.

    A command started in the background by a non-interactive shell (a CI script's ``&``)
    ignores SIGINT, and so do its children: the CLI would never see Ctrl-C and end by its
    request's timeout. A handler (not an ignored signal) is reset to the default at exec.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_while_waiting_for_the_generator_is_one_line() -> None:
    """Interrupted in the middle of a request (a generator that accepted and does not
    answer): exit status 130 and one line, no traceback."""
    with socket.create_server(("127.0.0.1", 0)) as server, ctrl_c_heard_by_children():
        port = server.getsockname()[1]
        cli = subprocess.Popen(
            [sys.executable, "-m", "client", "--url", f"http://127.0.0.1:{port}", "status"],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        connection, _ = server.accept()  # the request is on its way: the CLI waits
        with connection:
            connection.recv(4096)  # the whole request was sent: the CLI waits for the answer
            cli.send_signal(signal.SIGINT)
            _, err = cli.communicate(timeout=30)
    assert cli.returncode == EXIT_INTERRUPTED
    assert err == "expiry-pipeline: interrupted\n"


def test_missing_arguments_are_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--keys", "many"])
    assert exit_info.value.code == EXIT_USAGE


def test_run_exits_1_when_keys_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No consumer at all: nothing is consumed, and the generator gives up after 1 s of quiet.
    system = LocalSystem(tmp_path / "system", consumers=0, env={"DRAIN_TIMEOUT_S": "1"}).start()
    try:
        argv = ["--url", system.base_url, "run", "--keys", "20", "--delay", "0", "--ttl", "10"]
        assert main(argv) == EXIT_NOT_EXACTLY_ONCE
    finally:
        system.stop()
    out = capsys.readouterr().out
    assert out.startswith("FAIL")
    assert "20 generated, 0 consumed, 20 missing" in out


def test_run_exits_1_naming_the_reason_when_a_test_ends_without_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Redis refuses every write for longer than the drain timeout: the test fails.
    system = LocalSystem(tmp_path / "system", consumers=0, env={"DRAIN_TIMEOUT_S": "1"}).start()
    assert system.redis_url
    client = redis.Redis.from_url(system.redis_url)

    def fill_memory() -> None:
        wait_until(lambda: int(client.get("metrics:generated") or 0) > 0, 30, "a key written")
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", "1")

    filler = threading.Thread(target=fill_memory)
    try:
        filler.start()
        argv = ["--url", system.base_url, "run", "--keys", "20000", "--delay", "1"]
        assert main(argv) == EXIT_NOT_EXACTLY_ONCE
    finally:
        filler.join()
        client.config_set("maxmemory", "0")
        system.stop()
    err = capsys.readouterr().err
    assert "failed" in err and "out of memory" in err, err


def test_console_scripts_point_at_real_functions() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {
        "expiry-pipeline",
        "expiry-pipeline-generator",
        "expiry-pipeline-consumer",
    }
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(import_module(module), function)), target


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    status = {
        "config": {"num_keys": 1000},
        "progress": 41.0,
        "generated": 500,
        "in_flight": 90,
        "generation_rate": 980.0,
        "consumption_rate": 975.0,
        "state": "generating",
        "elapsed_s": 0.5,
    }
    terminal = FakeTerminal()
    progress = Progress(terminal)
    progress.show(status)
    progress.show({**status, "progress": 50.0, "in_flight": 0})
    progress.done()
    text = terminal.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "410/1,000 consumed" in text and "in flight 90" in text
    assert "gen 980/s" in text and "cons 975/s" in text
