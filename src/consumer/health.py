"""The consumer's small HTTP endpoint: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from consumer.readiness import Readiness
from shared import telemetry

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def observe_readiness(readiness: Readiness) -> None:
    """Copy the readiness flags into their gauges (read at each scrape, so never stale)."""
    telemetry.READY.set(1 if readiness.ready else 0)
    telemetry.LISTENING.set(1 if readiness.listening else 0)
    telemetry.BOUND.set(1 if readiness.bound else 0)


def make_health_app(readiness: Readiness) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app answering ``/healthz``, ``/readyz`` and ``/metrics``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            status, body, ctype = 200, b'{"ok": true}', "application/json"
        elif path == "/readyz":
            status = 200 if readiness.ready else 503
            body, ctype = json.dumps(readiness.as_dict()).encode(), "application/json"
        elif path == "/metrics":
            observe_readiness(readiness)
            body, ctype = telemetry.render(telemetry.CONSUMER_REGISTRY)
            status = 200
        else:
            status, body, ctype = 404, b'{"error": "not found"}', "application/json"
        headers = [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_health(
    readiness: Readiness,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the health endpoint until cancelled; ``started`` with the bound addresses."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    await serve(make_health_app(readiness), config, task_status=task_status)  # type: ignore[arg-type]
