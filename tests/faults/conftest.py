"""Fixtures of the fault-injection, bad-input and security tests: systems of their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dev.local_system import LocalSystem


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: injects a fault (kill, restart, dropped connection) into a live run"
    )


StartSystem = Callable[..., LocalSystem]


@pytest.fixture
def start_system(tmp_path: Path) -> Iterator[StartSystem]:
    """Start a ``LocalSystem`` in this test's folder (options as for ``LocalSystem``).

    Everything it started is stopped at the end, whatever state the test left it in; the
    process logs stay in the test's folder.
    """
    started: list[LocalSystem] = []

    def start(**options: Any) -> LocalSystem:
        options.setdefault("consumers", 4)
        system = LocalSystem(tmp_path / f"system-{len(started)}", **options)
        started.append(system)
        return system.start()

    yield start
    for system in started:
        system.stop()
