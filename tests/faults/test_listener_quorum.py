"""The listener quorum in a live run of real processes: slots change hands, no key is lost."""

from __future__ import annotations

import signal
import time

import pytest

from dev.local_system import LocalSystem, wait_until
from tests.support import check_every_key

from .conftest import StartSystem
from .test_faults import KEYS, check_exactly_once, run_with_fault

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def listeners(system: LocalSystem) -> list[str]:
    """The consumers holding a listener slot, from the status API."""
    return list(system.status()["listeners"])


def index_of(system: LocalSystem, consumer_id: str) -> int:
    return [p.name for p in system.consumer_processes].index(consumer_id)


def wait_listeners(system: LocalSystem, count: int, without: str | None = None) -> float:
    """Wait until ``count`` consumers listen (none of them ``without``); seconds waited."""
    began = time.monotonic()

    def enough() -> bool:
        now = listeners(system)
        return len(now) == count and without not in now

    wait_until(enough, 30, f"{count} listeners", interval=0.05)
    return time.monotonic() - began


def test_two_of_four_consumers_listen_and_a_killed_listener_s_slot_is_taken(
    start_system: StartSystem,
) -> None:
    system = start_system()
    wait_listeners(system, 2)
    victim = listeners(system)[0]
    takeover: list[float] = []

    def kill_listener() -> None:
        system.consumer_processes[index_of(system, victim)].kill()
        takeover.append(wait_listeners(system, 2, without=victim))

    status, row = run_with_fault(system, "kill -9 one of the 2 listeners", kill_listener)
    assert status["state"] == "finished" and status["generated"] == KEYS
    check_exactly_once(system, status, row)
    # Its slot went to another consumer within the lease (3 s) and a renewal period (1 s).
    assert takeover and victim not in listeners(system)
    print(f"slot taken over after {takeover[0]:.1f} s")


def test_a_listener_frozen_past_its_lease_stops_listening_when_it_wakes(
    start_system: StartSystem,
) -> None:
    system = start_system()
    wait_listeners(system, 2)
    victim = listeners(system)[0]
    process = system.consumer_processes[index_of(system, victim)]

    def freeze() -> None:
        process.signal(signal.SIGSTOP)
        wait_listeners(system, 2, without=victim)  # its slot is someone else's now
        process.signal(signal.SIGCONT)

    status, row = run_with_fault(system, "SIGSTOP one listener past its slot's lease", freeze)
    assert status["state"] == "finished" and status["generated"] == KEYS
    check_exactly_once(system, status, row)
    wait_until(lambda: "no longer listening" in process.log_text() or "lost the listener slot"
               in process.log_text(), 10, "the woken listener giving up")  # fmt: skip
    assert victim not in listeners(system)
    assert len(listeners(system)) == 2


def test_all_listeners_killed_registered_keys_are_recovered(start_system: StartSystem) -> None:
    system = start_system()
    wait_listeners(system, 2)
    victims = listeners(system)

    def kill_listeners() -> None:
        for victim in victims:
            system.consumer_processes[index_of(system, victim)].kill()
        wait_listeners(system, 2, without=victims[0])

    status, row = run_with_fault(system, "kill -9 both listeners", kill_listeners)
    assert status["state"] == "finished" and status["generated"] == KEYS
    check_exactly_once(system, status, row)
    assert not set(victims) & set(listeners(system))


def test_more_slots_than_consumers_means_everyone_listens(start_system: StartSystem) -> None:
    system = start_system(consumers=3, env={"EXPIRY_LISTENERS": "10"})
    wait_listeners(system, 3)
    system.start_test(num_keys=1000, key_delay=0)
    check_every_key(system, system.wait_test_end(timeout=60))
