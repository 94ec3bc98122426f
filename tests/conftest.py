"""Fixtures that start real servers: redis-server and nats-server on free ports in temp dirs,
and the whole system (generator + consumers) as local processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from dev.local_system import LocalSystem, NatsServer, RedisClusterNodes, RedisServer

settings.register_profile(
    "project", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("project")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with keyspace events for expirations."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """A private Redis Cluster: 3 masters with a replica each, every slot served."""
    cluster = RedisClusterNodes(tmp_path).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A private nats-server with JetStream."""
    server = NatsServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSystem]:
    """Redis, NATS, the generator and 3 consumers, shared by the tests of one module."""
    system = LocalSystem(tmp_path_factory.mktemp("system"), consumers=3).start()
    yield system
    system.stop()


@pytest.fixture
def fresh_system(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalSystem]:
    """A system of its own for one test (6 consumers unless the test is parametrized)."""
    consumers = getattr(request, "param", 6)
    system = LocalSystem(tmp_path / "system", consumers=consumers).start()
    yield system
    system.stop()
