"""``python -m generator``: serve the WebUI and control API until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from generator.app import Services, create_app
from generator.feed import StatusFeed
from generator.runner import TestRunner
from shared.backoff import Backoff
from shared.bridge import RedisGateway, open_bridge
from shared.config import GeneratorConfig, load_generator, redact
from shared.logs import setup_logging
from shared.service import load_or_exit, run_until_signalled

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
        # Through our handlers, so LOG_FORMAT applies to hypercorn's lines too.
        hypercorn.errorlog = logging.getLogger("hypercorn.error")
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
    backoff = Backoff(initial=0.2, cap=5.0)
    while True:
        try:
            await redis.call("PING")
            return
        except Exception as exc:
            url = redact(config.common.redis_url)
            log.warning("Redis at %s does not answer (%s); retrying", url, exc)
            await backoff.wait()


async def main() -> None:
    """Run the generator; SIGTERM/SIGINT stop it gracefully, a second one at once."""
    config = load_or_exit(load_generator, "generator")
    setup_logging(config.common.log_level, config.common.log_format, "generator")
    await run_until_signalled(partial(run_generator, config))


def run() -> None:
    """The ``expiry-pipeline-generator`` console script."""
    trio.run(main)


if __name__ == "__main__":
    run()
