"""A node of a 3-node JetStream cluster dies mid-run (kill -9): with the stream replicated on
every node in files (R3), every key is still consumed exactly once.

The stream's leader is found through the monitoring endpoint (``/jsz?streams=true``). The
killed node stays dead: the other two keep a quorum, elect a new leader where needed, and the
consumers reconnect to them (``NATS_URL`` lists every node). Measured into
``test-output/faults.jsonl`` like the other faults.
"""

from __future__ import annotations

import pytest

from dev.local_system import NatsCluster, NatsServer
from shared import names

from .conftest import StartSystem
from .test_faults import KEYS, check_exactly_once, run_with_fault

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def stream_replicas(cluster: NatsCluster) -> tuple[str, list[str]]:
    """The stream's leader and its other replicas, by node name, as the leader reports them."""
    leader = cluster.stream_leader(names.STREAM)
    for account in leader.jsz("streams=true").get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == names.STREAM:
                cluster_info = detail["cluster"]
                return leader.name, [r["name"] for r in cluster_info.get("replicas", [])]
    raise AssertionError(f"{leader.name} does not report stream {names.STREAM}")


def kill_and_check(start_system: StartSystem, fault: str, pick_leader: bool) -> None:
    system = start_system(nats_cluster=True)
    assert system.cluster is not None
    cluster = system.cluster
    leader, followers = stream_replicas(cluster)
    assert len(followers) == 2, (leader, followers)  # R3: one leader, two followers
    victims: list[NatsServer] = []

    def kill_node() -> None:
        name = leader if pick_leader else stream_replicas(cluster)[1][0]
        victim = next(node for node in cluster.nodes if node.name == name)
        victim.process.kill()
        victims.append(victim)

    status, row = run_with_fault(system, fault, kill_node)
    [victim] = victims
    assert not victim.process.running
    assert status["state"] == "finished"
    assert status["generated"] == KEYS
    check_exactly_once(system, status, row)
    for process in system.consumer_processes:
        assert "Traceback" not in process.log_text(), process.log_text()[-3000:]
    new_leader = cluster.stream_leader(names.STREAM)
    assert new_leader.name != victim.name
    if not pick_leader:
        assert new_leader.name == leader  # losing a follower moves nothing


def test_cluster_baseline(start_system: StartSystem) -> None:
    """No fault: the normal delay on the cluster, to read the other two rows against."""
    system = start_system(nats_cluster=True)
    assert system.cluster is not None
    status, row = run_with_fault(
        system, "none (baseline, 3-node NATS cluster, R3 file)", lambda: None
    )
    assert status["state"] == "finished"
    check_exactly_once(system, status, row)


def test_stream_leader_killed(start_system: StartSystem) -> None:
    kill_and_check(start_system, "kill -9 the NATS stream leader (3-node cluster, R3 file)", True)


def test_one_nats_follower_killed(start_system: StartSystem) -> None:
    kill_and_check(start_system, "kill -9 a NATS follower (3-node cluster, R3 file)", False)
