"""The lease format: one Python reader and writer (``shared.lease``), held to the same answers as
the scripts' Lua ``parse_lease`` on a real Redis."""

from __future__ import annotations

from dev.local_system import RedisServer
from shared import scripts
from shared.lease import Lease, key_of, member_of
from tests.helpers import bridged_redis

WELL_FORMED = [
    Lease("12", "1700000000000", "t-1", "odd|key"),
    Lease("3", "", "", "k"),
    Lease("7", "1700000000000", "-", "session:|:"),
    Lease("9", "", "t-2", "ключ"),
]


def test_a_lease_names_its_claim_and_the_key_goes_last() -> None:
    for lease in WELL_FORMED:
        assert Lease.parse(lease.member) == lease
        assert member_of(lease.header, lease.key) == lease.member
        assert key_of(lease.member) == lease.key
    assert WELL_FORMED[0].member == "12|1700000000000|t-1|odd|key"
    assert WELL_FORMED[0].header == "12|1700000000000|t-1"


def test_a_malformed_member_is_refused() -> None:
    for bad in ("", "x|1|t|k", "1|1|t|", "1|soon|t|k", "1|2|t", "|1|t|k"):
        assert Lease.parse(bad) is None, bad


async def test_the_scripts_read_a_lease_as_python_does(redis_server: RedisServer) -> None:
    source = scripts._PRELUDE + "return {parse_lease(ARGV[1])}"
    async with bridged_redis(redis_server.url) as redis:
        for lease in WELL_FORMED:
            fields = await redis.script(source, [], [lease.member])
            assert fields == [lease.claim_id, lease.deadline, lease.test_id, lease.key]
