"""Render the Grafana dashboard's panels from real data, for the README (docs/dashboard.png).

Grafana itself is not in Debian's archive, nor on PyPI or npm, so this draws the same panels
another way: it starts the local system and a real Prometheus scraping it, runs load tests
through the CLI, asks Prometheus (query_range) every query of
observability/grafana/dashboards/expiry-pipeline.json, and lays the answers out on the
dashboard's own grid as plain SVG in headless Chromium.

    .venv/bin/python scripts/dashboard_snapshot.py [--consumers 4] [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from client.cli import main as expiry_pipeline  # noqa: E402
from dev.local_system import running_system  # noqa: E402
from tests.observability.prometheus import DASHBOARD, PrometheusServer  # noqa: E402

COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#b877d9", "#f2495c", "#8ab8ff"]
RATE_INTERVAL = "5s"
ROW_PX = 34
WIDTH_PX = 1600
PAD = 8  # room above a chart's top label


def collect(consumers: int) -> tuple[dict[str, Any], float, float]:
    """Run load tests on a fresh local system; every panel target's range answer."""
    dashboard = json.loads(DASHBOARD.read_text())
    with (
        tempfile.TemporaryDirectory(prefix="dashboard-") as folder,
        running_system(Path(folder) / "system", consumers=consumers) as system,
    ):
        jobs = {
            "generator": [f"127.0.0.1:{system.generator_port}"],
            "consumer": [f"127.0.0.1:{port}" for port in system.health_ports],
        }
        prometheus = PrometheusServer(Path(folder), jobs).start()
        try:
            start = time.time()
            time.sleep(3)
            url = ["--url", system.base_url]
            for keys, delay in (("5000", "1"), ("15000", "0")):
                assert expiry_pipeline([*url, "run", "--keys", keys, "--delay", delay]) == 0
                time.sleep(4)
            end = time.time()
            answers: dict[str, Any] = {}
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                    answers[f"{panel['id']}/{target['refId']}"] = prometheus.api(
                        "query_range", query=expr, start=str(start), end=str(end), step="1"
                    )["result"]
        finally:
            prometheus.stop()
    return {"dashboard": dashboard, "answers": answers}, start, end


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format."""
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text or ", ".join(f"{k}={v}" for k, v in labels.items() if k != "__name__")


def fmt(value: float, unit: str | None) -> str:
    """A value as a panel shows it."""
    if math.isnan(value):
        return "-"
    if unit == "s":
        if 0 < value < 0.001:
            return f"{value * 1e6:.0f} us"
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value == int(value) or abs(value) >= 10 else f"{value:.2f}"


def stat_panel(panel: dict[str, Any], series: list[Any]) -> str:
    values = [float(v[1]) for s in series for v in s["values"][-1:]]
    value = values[0] if values else float("nan")
    defaults = panel["fieldConfig"]["defaults"]
    color = "#3d71d9"
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or (not math.isnan(value) and value >= step["value"]):
            color = {"green": "#56a64b", "red": "#e02f44"}.get(step["color"], step["color"])
    text = fmt(value, defaults.get("unit"))
    for mapping in defaults.get("mappings", []):
        if not math.isnan(value) and str(int(value)) in mapping["options"]:
            text = mapping["options"][str(int(value))]["text"]
    return f'<div class="stat" style="background:{color}">{html.escape(text)}</div>'


def timeseries_panel(
    panel: dict[str, Any], targets: list[tuple[str, list[Any]]], start: float, end: float, w: int
) -> str:
    height = panel["gridPos"]["h"] * ROW_PX - 90
    unit = panel["fieldConfig"]["defaults"].get("unit")
    lines = []
    for template, series in targets:
        for s in series:
            points = [(float(t), float(v)) for t, v in s["values"]]
            points = [(t, v) for t, v in points if not math.isnan(v)]
            if points:
                lines.append((legend(template, s["metric"]), points))
    highest = max([v for _, points in lines for _, v in points] + [0.0])
    top = highest * 1.1 if highest > 0 else 1.0
    left, plot_w = 56, w - 70

    def xy(t: float, v: float) -> str:
        x = left + plot_w * (t - start) / (end - start)
        return f"{x:.1f},{PAD + height * (1 - v / top):.1f}"

    svg = [f'<svg width="{w - 8}" height="{height + PAD + 6}">']
    for fraction in (0, 0.5, 1):
        y = PAD + height * (1 - fraction)
        svg.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y}" y2="{y}" class="grid"/>')
        label = fmt(top * fraction, unit)
        svg.append(f'<text x="{left - 6}" y="{y + 4}" class="axis">{label}</text>')
    for index, (_, points) in enumerate(lines):
        path = " ".join(xy(t, v) for t, v in points)
        svg.append(f'<polyline points="{path}" stroke="{COLORS[index % len(COLORS)]}"/>')
    svg.append("</svg>")
    keys = "".join(
        f'<span><i style="background:{COLORS[i % len(COLORS)]}"></i>{html.escape(name)}</span>'
        for i, (name, _) in enumerate(lines)
    )
    return "".join(svg) + f'<div class="legend">{keys}</div>'


def page(data: dict[str, Any], start: float, end: float) -> str:
    """The dashboard as an HTML page."""
    dashboard, answers = data["dashboard"], data["answers"]
    unit_w = WIDTH_PX / 24
    boxes = []
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        w = int(grid["w"] * unit_w) - 8
        style = (
            f"left:{grid['x'] * unit_w:.0f}px;top:{grid['y'] * ROW_PX}px;"
            f"width:{w}px;height:{grid['h'] * ROW_PX - 8}px"
        )
        targets = [
            (t["legendFormat"], answers[f"{panel['id']}/{t['refId']}"]) for t in panel["targets"]
        ]
        if panel["type"] == "stat":
            body = stat_panel(panel, targets[0][1])
        else:
            body = timeseries_panel(panel, targets, start, end, w)
        boxes.append(
            f'<div class="panel" style="{style}"><h2>{html.escape(panel["title"])}</h2>{body}</div>'
        )
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"]) * ROW_PX
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(end))
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin:0; background:#111217; color:#ccccdc; font:13px Helvetica, Arial, sans-serif; }}
header {{ padding:10px 12px; font-size:16px; }} header small {{ color:#8e8e9e; font-size:12px; }}
main {{ position:relative; width:{WIDTH_PX}px; height:{height}px; margin:0 8px; }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235; border-radius:3px;
  box-sizing:border-box; padding:6px 8px; overflow:hidden; }}
h2 {{ margin:0 0 6px; font-size:13px; font-weight:500; }}
.stat {{ display:flex; align-items:center; justify-content:center; height:calc(100% - 26px);
  color:#fff; font-size:34px; font-weight:500; border-radius:2px; }}
polyline {{ fill:none; stroke-width:1.6; }} .grid {{ stroke:#2c3235; }}
.axis {{ fill:#8e8e9e; font-size:11px; text-anchor:end; }}
.legend span {{ margin-right:12px; font-size:11px; white-space:nowrap; }}
.legend i {{ display:inline-block; width:12px; height:3px; margin-right:4px;
  vertical-align:middle; }}
</style></head><body>
<header>{html.escape(dashboard["title"])} <small>— the dashboard's own queries answered by a real
Prometheus scraping the local system ({when}); drawn by scripts/dashboard_snapshot.py, not by
Grafana</small></header><main>{"".join(boxes)}</main></body></html>"""


def screenshot(document: str, out: Path) -> None:
    """Render ``document`` with headless Chromium into ``out``."""
    from playwright.sync_api import sync_playwright

    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
        )
        page_ = browser.new_page(viewport={"width": WIDTH_PX + 16, "height": 900})
        page_.set_content(document)
        page_.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    args = parser.parse_args()
    data, start, end = collect(args.consumers)
    screenshot(page(data, start, end), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
