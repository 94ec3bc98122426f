"""The generator's HTTP face: the WebUI, the control API and the push channel (Quart-Trio)."""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio
from quart import Response, jsonify, request, send_from_directory
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from generator.feed import StatusFeed
from generator.guard import Refusal, content_refusal, known_hosts, origin_refusal
from generator.runner import NotReady, TestAlreadyRunning, TestRunner
from generator.status import parse_dead_letters
from generator.validation import RequestError, parse_start_request
from shared import names, telemetry
from shared.bridge import RedisError, RedisGateway
from shared.config import GeneratorConfig
from shared.redis_outage import outage_of

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
NOT_BUILT_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>WebUI not built</title></head><body>
<h1>The WebUI has not been built</h1>
<p>The API works (try <a href="/api/status">/api/status</a>), but <code>{dist}</code> holds no
<code>index.html</code>. Build it with <code>make web</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>) and reload.</p>
</body></html>"""


@dataclass
class Services:
    """What the routes work with."""

    redis: RedisGateway
    runner: TestRunner
    feed: StatusFeed
    nursery: trio.Nursery


def error(message: str, status: int, field: str | None = None) -> tuple[Response, int]:
    """A JSON error response."""
    body: dict[str, str] = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Same-origin requests (and listed origins) only; requests without Origin are not browsers'."""
    if not origin:
        return True
    if origin in allowed:
        return True
    return bool(host) and urlsplit(origin).netloc == host


def create_app(config: GeneratorConfig, services: Services) -> QuartTrio:
    """The Quart-Trio application."""
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    dist = os.path.abspath(config.web_dist)

    hosts = known_hosts(config.allowed_origins, config.host)

    def authorized() -> bool:
        if config.api_token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), config.api_token.encode()
        )

    async def control_refusal() -> tuple[Response, int] | None:
        """Why this start or stop request is refused, if it is."""
        if not authorized():
            return error("missing or wrong bearer token (Authorization: Bearer <API_TOKEN>)", 401)
        refusal: Refusal | None = None
        if config.api_token is None:
            refusal = origin_refusal(
                request.headers.get("Origin"),
                request.headers.get("Sec-Fetch-Site"),
                request.headers.get("Host"),
                config.allowed_origins,
                hosts,
            )
        if refusal is None:
            refusal = content_refusal(request.headers.get("Content-Type"), await request.get_data())
        if refusal is None:
            return None
        log.warning("refused %s %s: %s", request.method, request.path, refusal.message)
        return error(refusal.message, refusal.status)

    @app.after_request
    async def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        if code == 413:
            return error(f"request body too large: at most {MAX_BODY_BYTES} bytes", 413)
        return error(exc.description or exc.name, code)

    @app.errorhandler(RedisError)
    async def redis_unavailable(exc: RedisError) -> tuple[Response, int]:
        problem = outage_of(exc)
        if problem is None:
            log.warning("request %s %s: Redis failed: %s", request.method, request.path, exc)
            return error("Redis does not answer right now; try again in a moment", 503)
        services.runner.outage.report(exc)
        return error(f"{problem.message}; try again once it is resolved", 503)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("request %s %s failed", request.method, request.path)
        return error("internal error; the generator's log has the details", 500)

    @app.post("/api/start")
    async def start() -> Any:
        refused = await control_refusal()
        if refused is not None:
            return refused
        raw = await request.get_data()
        try:
            body = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            return error("the body is not valid JSON", 400)
        except RecursionError:
            return error("the body is nested too deeply to be a start request", 400)
        try:
            test_config = parse_start_request(body)
        except RequestError as exc:
            return jsonify(exc.as_dict()), 400
        try:
            test_id = await services.runner.start(test_config, services.nursery)
        except TestAlreadyRunning as exc:
            return error(str(exc), 409)
        except NotReady as exc:
            return error(str(exc), 503)
        return jsonify({"status": "started", "test_id": test_id, "config": test_config.as_dict()})

    @app.post("/api/stop")
    async def stop() -> Any:
        refused = await control_refusal()
        if refused is not None:
            return refused
        if services.runner.stop():
            log.info("test %s: stop requested", services.runner.test_id)
            return jsonify({"status": "stopping", "test_id": services.runner.test_id})
        return jsonify({"status": "idle"})

    @app.get("/api/status")
    async def status() -> Any:
        return jsonify(await services.feed.current())

    @app.get("/api/metrics")
    async def metrics() -> Any:
        document = await services.feed.current(offline=False)
        return jsonify(
            {
                "generated": document["generated"],
                "consumed": document["consumed"],
                "consumers": document["consumers"],
            }
        )

    @app.get("/api/dead-letters")
    async def dead_letters() -> Any:
        raw = request.args.get("limit", "100")
        if not raw.isdigit() or not 1 <= int(raw) <= names.DEAD_LETTERS_KEPT:
            return error(f"limit must be 1..{names.DEAD_LETTERS_KEPT}", 400, "limit")
        limit = int(raw)
        layout = services.redis.layout
        replies = await services.redis.pipeline(
            [("GET", name) for name in layout.every(names.METRICS_DEAD_LETTERS)]
            + [("LRANGE", name, 0, limit - 1) for name in layout.every(names.EXPIRY_DEAD_LETTERS)]
        )
        groups = len(layout.groups)
        count = sum(int(reply or 0) for reply in replies[:groups])
        recent = [record for records in replies[groups:] for record in parse_dead_letters(records)]
        recent.sort(key=lambda record: -float(record.get("at") or 0))
        return jsonify({"count": count, "recent": recent[:limit]})

    @app.get("/api/history")
    async def history() -> Any:
        return jsonify(services.feed.history)

    @app.get("/api/events")
    async def events() -> Any:
        if not origin_allowed(
            request.headers.get("Origin"), request.headers.get("Host"), config.allowed_origins
        ):
            return error("cross-origin event streams are not allowed", 403)

        async def stream() -> AsyncIterator[bytes]:
            document = services.feed.latest or await services.feed.current()
            while True:
                yield f"event: status\ndata: {json.dumps(document)}\n\n".encode()
                document = await services.feed.next_update()

        response = Response(stream(), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        response.timeout = None
        return response

    @app.get("/healthz")
    async def healthz() -> Any:
        return jsonify({"ok": True})

    @app.get("/readyz")
    async def readyz() -> Any:
        """Ready once Redis has answered; a later outage keeps it ready (the page then names
        the problem, and a probe that failed would take the page away with it)."""
        problem = services.runner.outage.as_dict()
        if not services.runner.ready:
            message = problem["message"] if problem else "Redis has not answered yet"
            return jsonify({"ready": False, "error": message, "redis_problem": problem}), 503
        return jsonify({"ready": True, "redis_problem": problem})

    @app.get("/metrics")
    async def prometheus() -> Any:
        redis_up = False
        with trio.move_on_after(1):
            try:
                redis_up = await services.redis.call("PING") in (True, "PONG")
            except Exception as exc:  # reported as the gauge's 0
                log.debug("Redis PING for /metrics failed: %s", exc)
        telemetry.GENERATOR_REDIS_UP.set(1 if redis_up else 0)
        body, content_type = telemetry.render(telemetry.GENERATOR_REGISTRY)
        return Response(body, content_type=content_type)

    @app.get("/")
    async def index() -> Any:
        if not await trio.Path(dist, "index.html").is_file():
            return Response(NOT_BUILT_PAGE.format(dist=dist), status=503, mimetype="text/html")
        response = await send_from_directory(dist, "index.html")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/<path:path>")
    async def static_file(path: str) -> Any:
        if path in ("api/start", "api/stop"):
            return error(f"/{path} takes POST", 405)
        if path.startswith("api/"):
            return error(f"no such API endpoint: /{path}", 404)
        response = await send_from_directory(dist, path)
        if path.startswith("assets/"):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response

    return app
