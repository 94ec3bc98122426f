"""One consumer process: a trio nursery of sibling tasks, connected by memory channels.

    expiry listener --batches--> dedup + publisher --> JetStream
    pull workers <-- JetStream --> handler        sweeper --> JetStream        health endpoint

Stopping (SIGTERM, SIGINT or ``stop``) first stops hearing events, lets the publisher finish
what it already heard and the pull worker finish the batch in hand, then closes connections.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import trio

from consumer.claim_store import KeyEvent
from consumer.dedup_publisher import run_dedup_publisher
from consumer.expiry_listener import run_expiry_listener
from consumer.handler import Handler, is_repeat_safe, load_handler
from consumer.health import serve_health
from consumer.listener_quorum import Slot, run_listener_quorum
from consumer.nudger import run_nudger
from consumer.probes import run_probes
from consumer.pull_worker import run_pull_worker
from consumer.readiness import Readiness
from consumer.sweeper import run_sweeper
from consumer.timers import Timers, run_timers
from consumer.worker_context import WorkerContext
from shared import names
from shared.backoff import retrying
from shared.bridge import RedisAuthenticationError, RedisGateway, open_bridge
from shared.config import ConfigError, ConsumerConfig, redact
from shared.nats import JetStream
from shared.patterns import KeyPatterns
from shared.redis.pubsub import RedisAddress
from shared.registration import FunctionsUnsupported, ensure_library
from shared.service import find_exception, listen_error

log = logging.getLogger(__name__)

PULL_BATCH = 256
#: A listener other than the lead (slot 0) reads its events this often, in one batch: the
#: lead wins nearly all claims, so the others' claims matter only when it is gone, and a
#: claim per 20 ms instead of one per key takes most of their cost away at low rates.
STANDBY_READ_S = 0.02
#: Pull workers per process: one counts a batch while the other waits for the next.
PULL_WORKERS = 2


@dataclass(frozen=True)
class KeyspaceEvents:
    """What Redis announces, as its ``notify-keyspace-events`` says."""

    #: On the keyspace channels (``K``), where Redis filters by key pattern itself; else the
    #: keyevent channel of expirations (``E``), every key's.
    keyspace: bool = False
    #: Also arming, moving and cancelling (``g``, on the keyspace channels): the fleet learns
    #: every key's deadline from Redis itself.
    deadlines: bool = False


#: The setting this system asks of Redis: keyspace (K) and keyevent (E) channels, generic
#: commands (g: expire, del, persist, rename) and expirations (x).
WANTED_FLAGS = "KEgx"


async def check_keyspace_events(redis: RedisGateway) -> KeyspaceEvents:
    """Read what Redis announces; say clearly at start-up what is missing and what follows."""
    try:
        flags = await redis.config_get("notify-keyspace-events")
    except RedisAuthenticationError as exc:
        log.error(
            "Redis refused the credentials in REDIS_URL (%s): fix REDIS_URL; until then this "
            "consumer stays unready",
            exc,
        )
        return KeyspaceEvents()
    except Exception as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            log.error(
                "Redis's TLS certificate is not trusted (%s): add ?ssl_ca_certs=<file of the CA "
                "that signed it> to REDIS_URL; until then this consumer stays unready",
                exc,
            )
            return KeyspaceEvents()
        log.warning(
            "cannot read notify-keyspace-events (%s); make sure it contains '%s'", exc, WANTED_FLAGS
        )
        return KeyspaceEvents()
    expiries = "x" in flags or "A" in flags
    if not expiries or ("E" not in flags and "K" not in flags):
        log.error(
            "Redis has notify-keyspace-events=%r, so it announces no expirations: set it to "
            "include '%s' (redis-cli CONFIG SET notify-keyspace-events %s). Until then only "
            "registered keys are processed, by the sweeper, seconds late.",
            flags,
            WANTED_FLAGS,
            WANTED_FLAGS,
        )
        return KeyspaceEvents()
    keyspace = "K" in flags
    deadlines = keyspace and ("g" in flags or "A" in flags)
    if not deadlines:
        log.warning(
            "Redis has notify-keyspace-events=%r, without %s: the fleet does not learn deadlines "
            "from Redis, so a key written again within DEDUP_WINDOW_MS is not handled again, DEL "
            "and PERSIST cancel nothing, and unregistered keys are as late as Redis announces "
            "them; set it to '%s' to have all of that",
            flags,
            "'K' and 'g'" if not keyspace else "'g'",
            WANTED_FLAGS,
        )
    return KeyspaceEvents(keyspace, deadlines)


async def load_functions(redis: RedisGateway) -> None:
    """Load the registration functions; say in one line when this Redis cannot have them."""
    try:
        await retrying(
            partial(ensure_library, redis),
            lambda exc: f"cannot load the Redis function library ({exc}); retrying",
            log,
            final=(FunctionsUnsupported, RedisAuthenticationError),
        )
    except FunctionsUnsupported:
        log.error(
            "Redis has no Functions (Redis 7.0 or later is needed): producers cannot register "
            "keys (FCALL expiry_register), so only keys whose expiry is heard are processed"
        )
    except RedisAuthenticationError:
        pass  # check_keyspace_events has said so


async def connect_jetstream(config: ConsumerConfig) -> JetStream:
    """Connect to NATS and make sure the stream and durable consumer exist, retrying forever."""
    url = config.common.nats_url
    connect = partial(
        JetStream.connect,
        url,
        config.common.nats_creds,
        f"consumer-{config.consumer_id}",
        names.queue_of(config.fleet),
        stream=config.stream,
        ca_file=config.common.nats_ca_file,
    )
    jetstream = await retrying(
        connect, lambda exc: f"{exc}; retrying", log, retry_on=(ConnectionError,)
    )
    differences = await retrying(
        jetstream.ensure_topology,
        lambda exc: f"cannot set up JetStream at {redact(url)} ({exc}); retrying",
        log,
    )
    for difference in differences:
        log.error(
            "existing JetStream %s; left as it is — delete it to let the consumers recreate it",
            difference,
        )
    return jetstream


async def run_consumer(
    config: ConsumerConfig,
    stop: trio.Event,
    *,
    handler: Handler | None = None,
    task_status: trio.TaskStatus[Readiness] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one consumer until ``stop`` is set; ``started`` once all tasks run.

    ``handler`` defaults to the one ``config.handler`` names.
    """
    readiness = Readiness()
    address = RedisAddress.from_url(config.common.redis_url)
    patterns = KeyPatterns(config.key_patterns)
    handler = handler or load_handler(config.handler)
    async with open_bridge(), trio.open_nursery() as outer:
        try:
            await outer.start(serve_health, readiness, config.health_host, config.health_port)
        except* OSError as failed:
            cause = find_exception(failed, OSError)
            assert cause is not None
            raise ConfigError(
                listen_error(
                    "HEALTH_HOST", "HEALTH_PORT", config.health_host, config.health_port, cause
                )
            ) from None
        redis = await RedisGateway.connect(config.common.redis_url)
        jetstream = await connect_jetstream(config)
        readiness.nats_connected = lambda: jetstream.is_connected
        announced = await check_keyspace_events(redis)
        await load_functions(redis)
        channel = (
            names.keyspace_channels(address.db, patterns.patterns)
            if announced.keyspace
            else names.expired_channel(address.db)
        )
        heard_events = frozenset({names.EXPIRED_EVENT})
        if announced.deadlines:
            heard_events |= names.DEADLINE_EVENTS
        log.info(
            "handling expired keys matching %s with %s",
            ", ".join(patterns.patterns),
            config.handler,
        )
        send, receive = trio.open_memory_channel[list[KeyEvent]](64)
        timers = Timers()
        async with trio.open_nursery() as work:
            # The slot this consumer listens in, while it does. The listener in slot 0 leads:
            # it touches (or, opted in, claims) registered keys as they fall due and works a trickle
            # of keys alone.
            listening_in: list[Slot] = []

            def leading() -> bool:
                return any(slot.index == 0 for slot in listening_in)

            async def listen(slot: Slot) -> None:
                listening_in.append(slot)
                try:
                    async with trio.open_nursery() as listening:
                        lead = leading() and config.expiry_listeners > 0
                        if lead and config.timer_lookahead_ms:
                            listening.start_soon(
                                run_timers,
                                redis,
                                timers,
                                send.clone(),
                                patterns,
                                config.timer_lookahead_ms,
                            )
                        elif lead and config.expiry_nudge_ms:
                            listening.start_soon(run_nudger, redis, config.expiry_nudge_ms)
                        await run_expiry_listener(
                            address,
                            channel,
                            patterns,
                            send.clone(),
                            readiness,
                            config.dedup_window_ms / 2000,
                            slot.held,
                            lambda: 0.0 if slot.index == 0 else STANDBY_READ_S,
                            heard_events,
                        )
                        listening.cancel_scope.cancel()
                finally:
                    listening_in.remove(slot)

            await work.start(
                run_dedup_publisher,
                redis,
                jetstream,
                receive,
                config.claim_lease_ms,
                config.dedup_window_ms,
                config.batch_size,
                timers,
                config.timer_lookahead_ms,
            )
            listening = trio.CancelScope()

            async def quorum(*, task_status: trio.TaskStatus[None]) -> None:
                with listening:
                    await run_listener_quorum(
                        redis,
                        config.fleet,
                        config.expiry_listeners,
                        config.consumer_id,
                        config.listener_lease_ms,
                        listen,
                        readiness,
                        task_status=task_status,
                    )

            await work.start(quorum)
            context = WorkerContext(
                redis=redis,
                jetstream=jetstream,
                consumer_id=config.consumer_id,
                handler=handler,
                limiter=trio.CapacityLimiter(config.handler_concurrency),
                lease_ms=config.claim_lease_ms,
                handler_timeout_s=config.handler_timeout_ms / 1000,
                check_leases=not is_repeat_safe(handler),
                # The lead pulls at any rate; the others join in while a backlog waits.
                primary=leading,
                overflow_pending=config.pull_overflow_pending,
            )
            for _ in range(PULL_WORKERS):
                await work.start(run_pull_worker, context, readiness, stop, PULL_BATCH)
            sweeping = trio.CancelScope()

            async def sweeper() -> None:
                with sweeping:
                    await run_sweeper(
                        redis,
                        jetstream,
                        patterns,
                        config.claim_lease_ms,
                        config.sweep_grace_ms,
                        config.dedup_window_ms,
                        config.sweep_interval_ms,
                    )

            work.start_soon(sweeper)
            # In the outer nursery: it must not hold up the drain, and is cancelled with it.
            outer.start_soon(run_probes, redis, jetstream, config.consumer_id)
            task_status.started(readiness)
            readiness.started = True
            log.info("consumer %s ready", config.consumer_id)
            await stop.wait()
            readiness.stopping = True
            log.info("consumer %s stopping: draining work in hand", config.consumer_id)
            listening.cancel()
            await send.aclose()  # with the listeners gone, the publisher ends its work in hand
            sweeping.cancel()
            work.cancel_scope.deadline = trio.current_time() + config.shutdown_grace_s
        with trio.move_on_after(3) as closing:
            closing.shield = True
            await jetstream.aclose()
            await redis.aclose()
        outer.cancel_scope.cancel()
    log.info("consumer %s stopped", config.consumer_id)
