"""``python -m generator``: serve the WebUI and control API until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import sys

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from generator.app import Services, create_app
from generator.feed import StatusFeed
from generator.runner import TestRunner
from shared.bridge import RedisGateway, open_bridge
from shared.config import ConfigError, GeneratorConfig, load_generator, redact
from shared.logs import setup_logging

log = logging.getLogger("generator")

GRACEFUL_TIMEOUT_S = 3.0


async def run_generator(
    config: GeneratorConfig,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set; ``started`` with the bound addresses."""
    async with open_bridge(), trio.open_nursery() as background:
        redis = await RedisGateway.connect(config.common.redis_url)
        runner = TestRunner(redis, config.drain_timeout_s)
        feed = StatusFeed(redis, auth_required=config.api_token is not None)
        await _wait_for_redis(redis, config)
        await runner.recover_interrupted(background)
        app = create_app(config, Services(redis, runner, feed, background))
        await background.start(feed.run)
        hypercorn = HypercornConfig()
        hypercorn.bind = [f"{config.host}:{config.port}"]
        hypercorn.accesslog = None
        hypercorn.graceful_timeout = GRACEFUL_TIMEOUT_S
        async with trio.open_nursery() as web:
            binds = await web.start(
                lambda task_status: serve(  # type: ignore[arg-type]
                    app, hypercorn, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            log.info(
                "generator serving on %s (Redis %s)%s",
                ", ".join(binds),
                redact(config.common.redis_url),
                ""
                if config.api_token
                else "; no API_TOKEN set: anyone who can reach it can start tests",
            )
            task_status.started(binds)
            await stop.wait()
            log.info("generator stopping")
        # A test still generating stays recorded as running; the next start reports it interrupted.
        background.cancel_scope.cancel()
        with trio.move_on_after(2) as closing:
            closing.shield = True
            await redis.aclose()
    log.info("generator stopped")


async def _wait_for_redis(redis: RedisGateway, config: GeneratorConfig) -> None:
    delay = 0.2
    while True:
        try:
            await redis.call("PING")
            return
        except Exception as exc:
            log.warning(
                "Redis at %s does not answer (%s); retrying", redact(config.common.redis_url), exc
            )
            await trio.sleep(delay)
            delay = min(5.0, delay * 2)


async def main() -> None:
    """Run the generator; SIGTERM/SIGINT stop it gracefully, a second one at once."""
    try:
        config = load_generator()
    except ConfigError as exc:
        print(f"generator: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    setup_logging(config.common.log_level, config.common.log_format, "generator")
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for _ in signals:
                    if stop.is_set():
                        nursery.cancel_scope.cancel()
                    stop.set()

            async def generate() -> None:
                await run_generator(config, stop)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            nursery.start_soon(generate)


if __name__ == "__main__":
    trio.run(main)
