#!/usr/bin/env python3
"""Print the fault-injection measurements as a Markdown table (for the README).

    .venv/bin/pytest tests/faults -m faults        # measures into test-output/faults.jsonl
    .venv/bin/python scripts/fault_table.py         # the latest run of each fault
    .venv/bin/python scripts/fault_table.py --all   # every run, oldest first

Recovery time runs from the end of the fault (the process killed, the server or the consumers
back, the frozen consumer resumed) until every key written up to then has been consumed. The
baseline row has no fault: its "recovery" is the normal delay of the newest keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "test-output" / "faults.jsonl"
COLUMNS = ("fault", "keys", "lost", "duplicates", "recovered by sweeper", "recovery time")
NOTE = (
    "Recovery time: from the end of the fault (process killed, server or consumers back, "
    "frozen consumer resumed) until every key written up to then was consumed, polled every "
    "50 ms; the baseline row is the normal delay of the newest keys. Recovered by sweeper: "
    "keys claimed by a sweeper rather than from an expiry event."
)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of the JSON-lines file; malformed lines are reported and skipped."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            print(f"{path}:{number}: not JSON, skipped", file=sys.stderr)
            continue
        if isinstance(row, dict) and "fault" in row:
            rows.append(row)
    return rows


def latest_per_fault(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each fault, in the order the faults first appear."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        latest[row["fault"]] = row  # a dict keeps the position of a fault's first row
    return list(latest.values())


def seconds(value: Any) -> str:
    return "never" if value is None else f"{float(value):.1f} s"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of ``rows``."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for row in rows:
        cells = [
            str(row["fault"]).replace("|", "\\|"),
            f"{int(row['keys']):,}",
            str(row["lost"]),
            str(row["duplicates"]),
            f"{int(row['recovered']):,}",
            seconds(row.get("recovery_s")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--all", action="store_true", help="every run, not just the latest")
    args = parser.parse_args(argv)
    if not args.file.exists():
        print(
            f"{args.file} does not exist: run `.venv/bin/pytest tests/faults -m faults` first",
            file=sys.stderr,
        )
        return 1
    rows = read_rows(args.file)
    if not rows:
        print(f"{args.file} holds no measurements", file=sys.stderr)
        return 1
    print(table(rows if args.all else latest_per_fault(rows)))
    print()
    print(NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
