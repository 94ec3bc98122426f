"""The nudger touches registered keys once past their deadline, against a real redis-server."""

import time
from pathlib import Path

import trio

from consumer.nudger import RECENT_MS, Nudger
from dev.local_system import RedisServer
from tests.helpers import add_due, bridged_redis


async def test_keys_are_touched_once_past_their_deadline_and_no_sooner(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra=["--enable-debug-command", "yes"]).start()
    try:
        async with bridged_redis(server.url) as redis:
            # Redis deletes (and announces) expired keys only when they are accessed now.
            await redis.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")

            async def expired() -> int:
                return int((await redis.call("INFO", "stats"))["expired_keys"])

            await redis.pipeline(
                [
                    ("SET", "gen-key:soon", "x", "PX", 30),
                    ("SET", "gen-key:long-overdue", "x", "PX", 1),
                    ("SET", "gen-key:later", "x", "PX", 60_000),
                ]
            )
            now = int(time.time() * 1000)
            await add_due(redis, ["gen-key:soon"], now + 30)
            await add_due(redis, ["gen-key:long-overdue"], now - RECENT_MS - 5000)
            await add_due(redis, ["gen-key:later"], now + 60_000)
            nudger = Nudger(redis)

            wait_s = await nudger.round()  # reads what comes; nothing is due yet
            assert set(nudger.known) == {"gen-key:soon"}
            assert 0 < wait_s <= 0.05  # when it falls due
            await trio.sleep(0.05)
            await nudger.round()  # touches it
            assert await expired() == 1
            assert await redis.call("EXISTS", "gen-key:later") == 1
    finally:
        server.stop()
