"""The nudger touches registered keys just past their deadline, against a real redis-server."""

import time
from pathlib import Path

import trio

from consumer.nudger import RECENT_MS, nudge_once
from dev.local_system import RedisServer
from shared import names
from tests.helpers import add_due, bridged_redis


async def test_only_keys_just_past_their_deadline_are_touched(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, extra=["--enable-debug-command", "yes"]).start()
    try:
        async with bridged_redis(server.url) as redis:
            # Redis deletes (and announces) expired keys only when they are accessed now.
            await redis.call("DEBUG", "SET-ACTIVE-EXPIRE", "0")
            await redis.pipeline(
                [
                    ("SET", "gen-key:just-due", "x", "PX", 1),
                    ("SET", "gen-key:long-overdue", "x", "PX", 1),
                    ("SET", "gen-key:not-yet", "x", "PX", 60_000),
                ]
            )
            now = int(time.time() * 1000)
            await add_due(redis, ["gen-key:just-due"], now - 2)
            await add_due(redis, ["gen-key:long-overdue"], now - RECENT_MS - 5000)
            await add_due(redis, ["gen-key:not-yet"], now + 60_000)
            await trio.sleep(0.01)
            assert (await redis.call("INFO", "stats"))["expired_keys"] == 0

            assert await nudge_once(redis, [names.EXPIRY_DUE]) is False

            assert (await redis.call("INFO", "stats"))["expired_keys"] == 1
            assert await redis.call("EXISTS", "gen-key:not-yet") == 1
    finally:
        server.stop()
