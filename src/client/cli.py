"""``expiry-pipeline run | status | stop``: drive load tests from a terminal or a CI job.

``run`` starts a test, shows its progress on stderr, prints the verdict and the delay
percentiles on stdout and exits 0 only when every key was consumed exactly once.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from client.api import Api, ApiError

DEFAULT_URL = "http://localhost:30080"
POLL_INTERVAL_S = 0.5
#: Without a terminal (CI logs), one progress line this often rather than one per poll.
PLAIN_PROGRESS_INTERVAL_S = 5.0

EXIT_OK = 0
EXIT_NOT_EXACTLY_ONCE = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """Every misuse (unknown command or option, missing or bad value) as one line on stderr and
    exit status 2, not the usage text: the line names what is wrong, ``--help`` the rest."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = Parser(
        prog="expiry-pipeline",
        description="Run and watch load tests of the expiry pipeline through its generator.",
        epilog=(
            f"exit status: {EXIT_OK} every key consumed exactly once (run) or done; "
            f"{EXIT_NOT_EXACTLY_ONCE} keys missing or counted twice; {EXIT_USAGE} bad "
            f"arguments; {EXIT_API} generator unreachable or refused; {EXIT_TIMEOUT} --timeout "
            "passed"
        ),
    )
    top.add_argument("--version", action="version", version=_version())
    _connection_options(top, defaults=True)
    # The same options after the command too (``run --keys 10 --url ...``).
    common = Parser(add_help=False)
    _connection_options(common, defaults=False)
    # Not required here: main() asks for it, after an unknown option was named (argparse checks
    # required arguments first, and would only say that COMMAND is missing).
    commands = top.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[common], help="start a test, follow it, exit 0 on exactly once"
    )
    run.add_argument("--keys", type=int, default=1000, help="keys to generate (default 1000)")
    run.add_argument(
        "--delay", type=int, default=1, help="ms between keys, 0 = as fast as possible (default 1)"
    )
    run.add_argument("--ttl", type=int, default=100, help="TTL of each key in ms (default 100)")
    run.add_argument(
        "--dedup-window", type=int, default=5000, help="TTL of each claim in ms (default 5000)"
    )
    run.add_argument(
        "--timeout",
        type=_seconds,
        default=0,
        help="give up (exit 4) after this many seconds; 0 = wait for the verdict (default)",
    )
    commands.add_parser("status", parents=[common], help="show the current or last test")
    commands.add_parser(
        "stop", parents=[common], help="stop generating; written keys are still consumed"
    )
    return top


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """``--url``, ``--token`` and ``--json``; without ``defaults`` they leave unset ones alone."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--url",
        type=_http_url,
        default=default(os.environ.get("EXPIRY_PIPELINE_URL", DEFAULT_URL)),
        help=f"the generator (default: $EXPIRY_PIPELINE_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=default(os.environ.get("API_TOKEN") or None),
        help="bearer token for start and stop (default: $API_TOKEN)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print one JSON document on stdout",
    )


def _version() -> str:
    try:
        return f"%(prog)s {metadata.version('expiry-pipeline')}"
    except metadata.PackageNotFoundError:
        return "%(prog)s (version unknown: not installed)"


def _http_url(value: str) -> str:
    """``--url`` (or $EXPIRY_PIPELINE_URL): an http:// or https:// URL with a host."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not the generator's address: expected http://host:port "
            "(from --url or EXPIRY_PIPELINE_URL)"
        )
    return value


def _seconds(value: str) -> float:
    """``--timeout``: a number of seconds, 0 or more."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: expected 0 or more seconds")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    command_line = parser()
    args = command_line.parse_args(argv)
    if args.command is None:
        command_line.error("no command given: expected run, status or stop")
    api = Api(args.url, args.token)
    try:
        if args.command == "run":
            return run(api, args)
        if args.command == "status":
            status = api.status()
            print(json.dumps(status) if args.json else describe(status))
            return EXIT_OK
        answer = api.stop()
        print(json.dumps(answer) if args.json else f"stop: {answer.get('status')}")
        return EXIT_OK
    except ApiError as exc:
        print(f"expiry-pipeline: {exc}", file=sys.stderr)
        return EXIT_API
    except KeyboardInterrupt:  # outside a followed test (that one is stopped by ``run``)
        print("expiry-pipeline: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def run(api: Api, args: argparse.Namespace) -> int:
    """Start a test and follow it to its verdict."""
    config = {
        "num_keys": args.keys,
        "key_delay": args.delay,
        "key_ttl": args.ttl,
        "dedup_window": args.dedup_window,
    }
    test_id = str(api.start(config)["test_id"])
    progress = Progress(sys.stderr)
    deadline = time.monotonic() + args.timeout if args.timeout > 0 else None
    try:
        while True:
            status = api.status()
            if status.get("test_id") != test_id:
                raise ApiError(f"test {test_id} was replaced by {status.get('test_id')}")
            if status["verdict"] is not None and not status["is_running"]:
                break
            if status.get("finished_at") is not None and not status["is_running"]:
                # Ended without a verdict: Redis lost the test, or refused its work too long.
                progress.done()
                reason = status.get("reason") or "no verdict was given"
                print(
                    f"expiry-pipeline: test {test_id} {status['state']}: {reason}", file=sys.stderr
                )
                return EXIT_NOT_EXACTLY_ONCE
            progress.show(status)
            if deadline is not None and time.monotonic() > deadline:
                progress.done()
                print(
                    f"expiry-pipeline: no verdict after {args.timeout:g} s; the test goes on "
                    "(stop it with 'expiry-pipeline stop')",
                    file=sys.stderr,
                )
                return EXIT_TIMEOUT
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        progress.done()
        api.stop()
        print("expiry-pipeline: interrupted; the test was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.done()
    exactly_once = bool(status["verdict"]["exactly_once"])
    if args.json:
        print(json.dumps(summary(status)))
    else:
        print(report(status))
    return EXIT_OK if exactly_once else EXIT_NOT_EXACTLY_ONCE


class Progress:
    """A live progress line on a terminal; a line every few seconds anywhere else."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.last_plain = 0.0
        self.shown = False

    def show(self, status: dict[str, Any]) -> None:
        """Show ``status``'s progress."""
        line = progress_line(status)
        if self.live:
            self.out.write("\r\033[K" + line)
            self.out.flush()
            self.shown = True
        elif time.monotonic() - self.last_plain >= PLAIN_PROGRESS_INTERVAL_S:
            self.last_plain = time.monotonic()
            self.out.write(line + "\n")
            self.out.flush()

    def done(self) -> None:
        """End the live line."""
        if self.shown:
            self.out.write("\n")
            self.out.flush()
            self.shown = False


def progress_line(status: dict[str, Any], width: int = 24) -> str:
    """``[#####.......]  41.0%  410/1000 consumed  gen 980/s  cons 975/s  in flight 14``."""
    config = status.get("config") or {}
    total = int(config.get("num_keys") or 0)
    done = round(width * float(status.get("progress") or 0) / 100)
    bar = "#" * done + "." * (width - done)
    return (
        f"[{bar}] {float(status.get('progress') or 0):5.1f}%  "
        f"{_consumed(status):,}/{total:,} consumed  gen {status.get('generation_rate', 0):,.0f}/s  "
        f"cons {status.get('consumption_rate', 0):,.0f}/s  in flight {status.get('in_flight', 0)}  "
        f"{status.get('state')} {status.get('elapsed_s', 0):.1f} s"
    )


def _consumed(status: dict[str, Any]) -> int:
    """Distinct keys consumed (``in_flight`` is generated minus distinct consumed)."""
    return max(0, int(status.get("generated") or 0) - int(status.get("in_flight") or 0))


def summary(status: dict[str, Any]) -> dict[str, Any]:
    """What ``run --json`` prints: the verdict, the delay percentiles and the rates."""
    return {
        "test_id": status["test_id"],
        "state": status["state"],
        "exactly_once": status["verdict"]["exactly_once"],
        "verdict": status["verdict"],
        "config": status["config"],
        "latency_ms": status["latency_ms"],
        "generation_rate": status["generation_rate"],
        "consumption_rate": status["consumption_rate"],
        "elapsed_s": status["elapsed_s"],
        "recovered": status["recovered"],
        "redelivered": status["redelivered"],
        "consumers": status["consumers"],
    }


def report(status: dict[str, Any]) -> str:
    """The verdict for people."""
    verdict = status["verdict"]
    head = "PASS: every key consumed exactly once" if verdict["exactly_once"] else "FAIL"
    lines = [
        f"{head} (test {status['test_id']}, {status['state']})",
        f"  keys: {verdict['expected']:,} generated, {verdict['consumed']:,} consumed, "
        f"{verdict['missing']:,} missing, {verdict['duplicates']:,} duplicates, "
        f"{verdict['dead_letters']:,} dead letters",
        f"  rates: generated {status['generation_rate']:,.0f}/s, "
        f"consumed {status['consumption_rate']:,.0f}/s over {status['elapsed_s']:.1f} s",
    ]
    latency = status.get("latency_ms")
    if latency:
        lines.append(
            f"  delay deadline->consumed: p50 {latency['p50']:,.0f} ms, "
            f"p95 {latency['p95']:,.0f} ms, p99 {latency['p99']:,.0f} ms"
        )
    lines.append(
        f"  recovered by sweepers: {status['recovered']:,}; "
        f"redeliveries refused: {status['redelivered']:,}; consumers: {len(status['consumers'])}"
    )
    return "\n".join(lines)


def describe(status: dict[str, Any]) -> str:
    """``status`` for people."""
    if status.get("state") == "idle":
        return "no test has run yet"
    lines = [f"test {status['test_id']}: {status['state']}", "  " + progress_line(status)]
    if status.get("verdict"):
        lines.append(report(status))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
