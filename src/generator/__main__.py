"""``python -m generator``: serve the WebUI and control API until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from generator.app import Services, create_app
from generator.feed import StatusFeed
from generator.runner import TestRunner
from shared.bridge import RedisGateway, open_bridge
from shared.config import ConfigError, GeneratorConfig, load_generator, redact
from shared.logs import setup_logging
from shared.redis_outage import RedisOutage
from shared.service import find_exception, listen_error, load_or_exit, run_or_exit
from shared.usage import GENERATOR_VARIABLES, handle_arguments

log = logging.getLogger("generator")

ABOUT = (
    "The expiry pipeline's generator: serves the WebUI and its control API, writes the test "
    "keys to Redis and follows them to a verdict, until SIGTERM or SIGINT. It reads its "
    "settings from the environment only."
)

GRACEFUL_TIMEOUT_S = 3.0
KEEP_ALIVE_TIMEOUT_S = 5.0
#: Longest a send to a client may take once its request was cancelled.
SEND_TIMEOUT_S = 10.0


async def run_generator(
    config: GeneratorConfig,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``stop`` is set; ``started`` with the bound addresses.

    It serves at once, whether Redis answers or not: the status names what is wrong with
    Redis, and the runner looks for a test an earlier process left running once Redis answers.
    """
    async with open_bridge(), trio.open_nursery() as background:
        redis = await RedisGateway.connect(config.common.redis_url)
        outage = RedisOutage(f"Redis at {redact(config.common.redis_url)}")
        runner = TestRunner(redis, config.drain_timeout_s, outage)
        feed = StatusFeed(redis, runner, auth_required=config.api_token is not None)
        app = create_app(config, Services(redis, runner, feed, background))
        hypercorn = HypercornConfig()
        hypercorn.bind = [f"{config.host}:{config.port}"]
        hypercorn.accesslog = None
        # Through our handlers, so LOG_FORMAT applies to hypercorn's lines too.
        hypercorn.errorlog = logging.getLogger("hypercorn.error")
        hypercorn.graceful_timeout = GRACEFUL_TIMEOUT_S
        # Idle connections close after this, so no client can pin file descriptors.
        hypercorn.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
        async with trio.open_nursery() as web:
            try:
                binds = await web.start(
                    lambda task_status: serve(  # type: ignore[arg-type]
                        finish_sends(app),  # type: ignore[arg-type]
                        hypercorn,
                        shutdown_trigger=stop.wait,
                        task_status=task_status,
                    )
                )
            except* OSError as failed:
                cause = find_exception(failed, OSError)
                assert cause is not None
                raise ConfigError(
                    listen_error("HOST", "PORT", config.host, config.port, cause)
                ) from None
            background.start_soon(runner.recover_interrupted)
            await background.start(feed.run)
            log.info(
                "generator serving on %s (Redis %s)%s",
                ", ".join(binds),
                redact(config.common.redis_url),
                ""
                if config.api_token
                else "; no API_TOKEN set: start and stop are accepted only from this page's "
                "own origin, but anyone who can reach the port can use them",
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


Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def finish_sends(app: Callable[..., Awaitable[None]]) -> ASGIApp:
    """Let each of the app's sends finish, even when Quart-Trio cancels the request meanwhile.

    Quart-Trio cancels a request's tasks as soon as the client's side is done, while the last
    send is still inside hypercorn, which then restarts the connection's keep-alive timer or
    closes it: cancelled there, the timer never ran and idle connections stayed open forever.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_to_the_end(message: Message) -> None:
            with trio.CancelScope(shield=True) as sending:
                sending.deadline = trio.current_time() + SEND_TIMEOUT_S
                await send(message)

        await app(scope, receive, send_to_the_end)

    return wrapped


async def main() -> None:
    """Run the generator; SIGTERM/SIGINT stop it gracefully, a second one at once."""
    config = load_or_exit(load_generator, "generator")
    setup_logging(config.common.log_level, config.common.log_format, "generator")
    await run_or_exit(partial(run_generator, config), "generator")


def run() -> None:
    """The ``expiry-pipeline-generator`` console script; ``--help`` and ``--version`` answer
    without connecting to anything."""
    handle_arguments("generator", ABOUT, GENERATOR_VARIABLES)
    trio.run(main)


if __name__ == "__main__":
    run()
