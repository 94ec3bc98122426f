"""A real ``prometheus`` server for tests, scraping targets on this machine."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from dev.local_system import Process, find_binary, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "observability"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "expiry-pipeline.json"


class PrometheusServer:
    """``prometheus`` with our alert rules, scraping each job's targets every second."""

    def __init__(self, workdir: Path, jobs: dict[str, Sequence[str]]) -> None:
        self.port = free_port()
        self.dir = workdir / f"prometheus-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in jobs.items()
            ],
        }
        config_file = self.dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        argv = [
            find_binary("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.process = Process("prometheus", argv, self.dir / "prometheus.log")
        self.targets = sum(len(t) for t in jobs.values())

    @property
    def url(self) -> str:
        """Where its HTTP API answers."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        """Start, and wait until every target has been scraped successfully."""
        self.process.start()
        wait_until(self._all_targets_up, 30, "prometheus scraping every target", interval=0.2)
        return self

    def _all_targets_up(self) -> bool:
        if not self.process.running:
            raise RuntimeError(f"prometheus exited:\n{self.process.log_text()[-2000:]}")
        targets = self.api("targets")["activeTargets"]
        return len(targets) == self.targets and all(t["health"] == "up" for t in targets)

    def api(self, endpoint: str, **params: str) -> Any:
        """``GET /api/v1/<endpoint>``; the ``data`` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{endpoint}{query}", timeout=10) as reply:
            answer = json.loads(reply.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()
