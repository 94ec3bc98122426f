"""``make up``: run Redis, NATS, the generator and 6 consumers on this machine until Ctrl-C.

Redis and NATS are started here on free ports (data in .local/, nothing kept) unless
REDIS_URL / NATS_URL point at servers of your own. Without API_TOKEN the generator listens on
localhost only.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from dev.local_system import LocalSystem  # noqa: E402
from shared.config import redact  # noqa: E402


def main() -> int:
    """Start everything, print where it is, wait for Ctrl-C, stop everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "30080")))
    parser.add_argument("--consumers", type=int, default=int(os.environ.get("CONSUMERS", "6")))
    parser.add_argument(
        "--nats-cluster",
        action="store_true",
        default=os.environ.get("NATS_CLUSTER") == "1",
        help="a 3-node NATS cluster, the stream at 3 replicas in files (also NATS_CLUSTER=1)",
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=os.environ.get("REDIS_CLUSTER") == "1",
        help="a Redis Cluster of 3 masters and 3 replicas (also REDIS_CLUSTER=1)",
    )
    args = parser.parse_args()
    token = os.environ.get("API_TOKEN")
    host = os.environ.get("HOST") or ("0.0.0.0" if token else "127.0.0.1")
    workdir = ROOT / ".local" / time.strftime("run-%Y%m%d-%H%M%S")
    system = LocalSystem(
        workdir,
        consumers=args.consumers,
        redis_url=os.environ.get("REDIS_URL") or None,
        nats_url=os.environ.get("NATS_URL") or None,
        nats_cluster=args.nats_cluster,
        redis_cluster=args.redis_cluster,
        generator_port=args.port,
        generator_host=host,
    )
    stopping = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        print(
            f"starting Redis, NATS, the generator and {args.consumers} consumers (logs: {workdir})"
        )
        system.start()
        servers_env = ROOT / ".local" / "servers.env"
        servers_env.write_text(f"REDIS_URL={system.redis_url}\nNATS_URL={system.nats_url}\n")
        print(f"Redis      {redact(system.redis_url or '')}")
        print(f"NATS       {redact(system.nats_url or '')}")
        print(f"WebUI      http://localhost:{args.port}")
        if not token:
            print("           listening on localhost only: set API_TOKEN to require a token")
            print("           for start/stop and to listen on every interface")
        print("Your own keys: `make example` runs the session time-out example against these.")
        print("Ctrl-C stops everything.")
        while True:
            time.sleep(1)
            dead = [
                p.name
                for p in [system.generator, *system.consumer_processes]
                if p is not None and not p.running
            ]
            if dead:
                print(f"stopped unexpectedly: {', '.join(dead)}; see the logs in {workdir}")
                return 1
    except KeyboardInterrupt:
        print("\nstopping…")
        return 0
    except Exception as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        codes = system.stop()
        print("stopped" + ("" if set(codes.values()) <= {0} else f" (exit codes {codes})"))


if __name__ == "__main__":
    sys.exit(main())
