"""Helpers of ``make bench``: the topology's name, and the comparison of the two latest runs.

    .venv/bin/python bench/latency.py topology   # monolith, images-http, ... (config + env)
    .venv/bin/python bench/latency.py compare    # the latest saved run against the one before

``compare`` prints pytest-benchmark's own side-by-side table (``pytest-benchmark compare
--between``: min, median, max and the change), then what that table cannot show: p50/p95/p99
from the saved raw timings (runs are saved with ``--benchmark-save-data``) and the Server-Timing
medians per domain, i.e. where each request's time went in each run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blog.config import ConfigError  # noqa: E402
from lab.stats import percentile  # noqa: E402
from lab.topology import current_topology  # noqa: E402

STORAGE = ROOT / ".benchmarks"
BIN = Path(sys.executable).parent


def saved_runs(storage: Path = STORAGE) -> list[Path]:
    """Saved runs, oldest first (pytest-benchmark numbers them per machine folder)."""
    runs = [p for p in storage.glob("*/[0-9][0-9][0-9][0-9]_*.json")]
    return sorted(runs, key=lambda p: (p.stat().st_mtime, p.name))


def _load(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text())
    return {b["name"]: b for b in data["benchmarks"]}


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _delta(before: float, after: float) -> str:
    return f"{(after - before) / before * 100:+.0f}%" if before else ""


def _percentiles(bench: dict[str, Any]) -> tuple[float, float, float, int] | None:
    data = bench["stats"].get("data")
    if not data:
        return None
    return percentile(data, 50), percentile(data, 95), percentile(data, 99), len(data)


def _domains(bench: dict[str, Any]) -> str:
    timing = bench.get("extra_info", {}).get("server_timing", {})
    parts = [
        f"{name} {info['median_ms']:.2f}/{info['mode']}"
        for name, info in timing.get("domains", {}).items()
    ]
    total = timing.get("total_median_ms")
    if total is not None:
        parts.append(f"total {total:.2f}")
    return ", ".join(parts)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _modes(bench: dict[str, Any]) -> dict[str, str]:
    domains = bench.get("extra_info", {}).get("server_timing", {}).get("domains", {})
    return {name: info["mode"] for name, info in domains.items()}


def _moved(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """Whether the scenario calls a domain whose mode differs between the runs."""
    if old is None:
        return ""
    was, now = _modes(old), _modes(new)
    moved = sorted(d for d in set(was) | set(now) if d in was and d in now and was[d] != now[d])
    return ",".join(moved) if moved else "no"


def percentile_report(before: Path | None, after: Path) -> str:
    new = _load(after)
    old = _load(before) if before else {}
    if before:
        header = [
            "scenario (ms)",
            "n before/after",
            "p50 before",
            "p50 after",
            "Δp50",
            "p95 before",
            "p95 after",
            "p99 before",
            "p99 after",
            "moved domain",
        ]
    else:
        header = ["scenario (ms)", "n", "p50", "p95", "p99"]
    rows, timing_lines = [header], []
    for name in sorted(new, key=lambda n: new[n]["stats"]["median"]):
        now = _percentiles(new[name])
        if now is None:
            continue
        was = _percentiles(old[name]) if name in old else None
        scenario = name.removeprefix("test_")
        if before:
            if was is None:
                rows.append(
                    [
                        scenario,
                        f"-/{now[3]}",
                        "",
                        _ms(now[0]),
                        "",
                        "",
                        _ms(now[1]),
                        "",
                        _ms(now[2]),
                        "",
                    ]
                )
            else:
                rows.append(
                    [
                        scenario,
                        f"{was[3]}/{now[3]}",
                        _ms(was[0]),
                        _ms(now[0]),
                        _delta(was[0], now[0]),
                        _ms(was[1]),
                        _ms(now[1]),
                        _ms(was[2]),
                        _ms(now[2]),
                        _moved(old[name], new[name]),
                    ]
                )
            timing_lines.append(
                f"  {scenario}:\n    before: {_domains(old[name]) if name in old else '-'}\n"
                f"    after:  {_domains(new[name])}"
            )
        else:
            rows.append([scenario, str(now[3]), _ms(now[0]), _ms(now[1]), _ms(now[2])])
            timing_lines.append(f"  {scenario}: {_domains(new[name])}")
    runs = f"{before.stem} → {after.stem}" if before else after.stem
    noise = (
        "\n'moved domain': a domain this scenario calls runs in another mode than before; rows "
        "with 'no' changed nothing but the moment they ran: their Δ is this machine's noise."
        if before
        else ""
    )
    return (
        f"Percentiles from the saved raw timings ({runs}); with fewer than 100 rounds p99 is "
        "close to the slowest round.\n"
        + table(rows)
        + noise
        + "\n\nServer-Timing, median per request, summed per domain (ms/mode; email runs inside "
        "the publishing call in-process):\n" + "\n".join(timing_lines)
    )


def compare() -> int:
    runs = saved_runs()
    if not runs:
        print("no saved run under .benchmarks/ yet: run `make bench` first")
        return 1
    latest = runs[-1]
    previous = runs[-2] if len(runs) > 1 else None
    if previous is None:
        print(f"{latest.name} is the first saved run: nothing to compare with yet.\n")
    else:
        print(f"== {previous.stem} (before) → {latest.stem} (after)\n")
        subprocess.run(
            [
                str(BIN / "pytest-benchmark"),
                "compare",
                str(previous),
                str(latest),
                "--between",
                "min,median,max",
            ],
            check=True,
        )
        print()
    print(percentile_report(previous, latest))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["topology", "compare"])
    args = parser.parse_args(argv)
    if args.command == "topology":
        try:
            print(current_topology().name)
        except (ValueError, ConfigError) as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    return compare()


if __name__ == "__main__":
    sys.exit(main())
