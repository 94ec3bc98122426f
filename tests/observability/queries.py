"""Every PromQL query the dashboard and the alert rules use, read from their files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .prometheus import ALERTS, DASHBOARD

METRIC = re.compile(r"\bexpiry_pipeline_[a-z_]+\b")
#: What Grafana puts in for ``$__rate_interval`` at a 1 s scrape interval, near enough.
RATE_INTERVAL = "30s"


def dashboard_queries(path: Path = DASHBOARD) -> dict[str, str]:
    """``panel title / refId`` -> expression, with Grafana's variables filled in."""
    dashboard = json.loads(path.read_text())
    return {
        f"{panel['title']} / {target['refId']}": target["expr"].replace(
            "$__rate_interval", RATE_INTERVAL
        )
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every rule of the rule file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (histograms by their ``_bucket`` series)."""
    return set(METRIC.findall(expr))
