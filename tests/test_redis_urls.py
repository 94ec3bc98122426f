"""Every ``REDIS_URL`` form redis-py accepts reaches the same database for every part of a
consumer: its listener hears the expiries there, its scripts claim them, its handler runs.

Keys expire in database 3 and, under the same names, in database 0: only database 3's are
handled, once each.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dev.local_system import NatsServer, RedisServer, wait_until
from dev.timer_handler import HANDLED
from tests.support import REPO, redis_tls_files, start_consumer


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    folder = tmp_path_factory.mktemp("urls")
    socket = folder / "redis.sock"
    plain = RedisServer(
        folder,
        extra=[
            "--unixsocket",
            str(socket),
            "--unixsocketperm",
            "700",
            *("--user", "app", "on", ">s@cret", "~*", "&*", "+@all"),
        ],
    ).start()
    files = redis_tls_files(folder)
    secure = RedisServer(folder, tls=files).start()
    nats = NatsServer(folder).start()
    try:
        yield {"plain": plain, "secure": secure, "nats": nats, "socket": socket, "ca": files[2]}
    finally:
        nats.stop()
        secure.stop()
        plain.stop()


FORMS = {
    "path": "redis://127.0.0.1:{port}/3",
    "query": "redis://127.0.0.1:{port}/?db=3",
    "user and password": "redis://app:s%40cret@127.0.0.1:{port}/3",
    "unix socket": "unix://{socket}?db=3",
    "tls": "rediss://127.0.0.1:{tls_port}/?db=3&ssl_ca_certs={ca}",
}


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.parametrize("form", list(FORMS))
def test_expiries_in_the_url_s_database_are_handled_once_and_no_others(
    form: str, servers: dict[str, object], tmp_path: Path
) -> None:
    plain, secure, nats = servers["plain"], servers["secure"], servers["nats"]
    assert isinstance(plain, RedisServer) and isinstance(secure, RedisServer)
    assert isinstance(nats, NatsServer)
    url = FORMS[form].format(
        port=plain.port, tls_port=secure.port, socket=servers["socket"], ca=servers["ca"]
    )
    server = secure if form == "tls" else plain
    tls = {"ssl": True, "ssl_ca_certs": str(servers["ca"])} if form == "tls" else {}
    db3 = redis.Redis(port=server.port, db=3, decode_responses=True, **tls)  # type: ignore[arg-type]
    db0 = redis.Redis(port=server.port, db=0, decode_responses=True, **tls)  # type: ignore[arg-type]
    db3.delete(HANDLED)
    db0.delete(HANDLED)
    process, health = start_consumer(
        tmp_path,
        REDIS_URL=url,
        NATS_URL=nats.url,
        KEY_PATTERNS="timer:*",
        HANDLER="dev.timer_handler:record",
        PYTHONPATH=str(REPO),
    )
    try:
        wait_until(lambda: ready(health), 30, f"the consumer on {url} ready")
        keys = [f"timer:{form}:{i}" for i in range(20)]
        for client in (db3, db0):
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key, "v", px=100)
            pipe.execute()

        def handled() -> list[str]:
            return [json.loads(r)["key"] for r in db3.lrange(HANDLED, 0, -1)]

        wait_until(lambda: len(handled()) >= 20, 30, "database 3's keys handled")
        wait_until(lambda: db3.zcard("expiry:leases") == 0, 10, "no claim in flight")
        assert Counter(handled()) == {key: 1 for key in keys}
        assert db0.llen(HANDLED) == 0 and db0.zcard("expiry:leases") == 0
    finally:
        process.stop()
        db3.close()
        db0.close()
