"""How the targets were reached: one entry per full run, under a label that names the change.

``reports/latency-history.json`` keeps, per run, the headline numbers the targets are judged on
(F0, the ladder, the worst hop, the post page, throughput and the CPU ratio, the idle cost, the
lean baseline's overhead) and each target's verdict. The report renders every entry as one row,
so a reader sees what each change bought.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ABOUT = (
    "One entry per full `make bench-matrix` run (bench/matrix.py --label names it): the "
    "headline numbers of issue 9's targets. Rendered as the history table of reports/latency.md."
)


def default_label(root: Path) -> str:
    """The short commit and its subject (and a mark when the tree has uncommitted changes)."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    label = git("log", "-1", "--format=%h %s") or "unknown commit"
    if git("status", "--porcelain", "--untracked-files=no"):
        label += " (+ uncommitted changes)"
    return label


def entry(label: str, results: dict[str, Any], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """This run's line of history: the targets' numbers and verdicts, and where it ran."""
    machine = results["machine"]
    by_key = {t["key"]: t for t in targets}
    return {
        "label": label,
        "date": machine["date"],
        "commit": machine.get("commit"),
        "dirty": machine.get("dirty"),
        "seconds": round(machine.get("seconds", 0.0)),
        "quick": bool(results.get("quick")),
        "server": machine.get("server"),
        "cpu_model": machine.get("cpu_model"),
        "targets": {key: {"verdict": t["verdict"], **t["values"]} for key, t in by_key.items()},
    }


def load(path: Path) -> list[dict[str, Any]]:
    """Every recorded run, oldest first (none when the file does not exist yet)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    runs: list[dict[str, Any]] = data.get("runs", [])
    return runs


def append(path: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``run`` at the end of the history file (created when missing); returns all runs."""
    runs = [*load(path), run]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"about": ABOUT, "runs": runs}, indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return runs
