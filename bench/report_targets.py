"""The top of the report: issue 9's targets with PASS/FAIL, and the history of how they were
reached (one row per recorded run, from ``reports/latency-history.json``)."""

from __future__ import annotations

from typing import Any

from bench.report_tables import table
from bench.targets import FAIL, PASS, fmt_us


def targets_section(results: dict[str, Any]) -> list[str]:
    targets = results.get("targets") or []
    rows = [
        [f"{t['key']}", t["title"], t["measured"], t["limit"], f"**{t['verdict']}**"]
        for t in targets
    ]
    passed = sum(1 for t in targets if t["verdict"] == PASS)
    failed = sum(1 for t in targets if t["verdict"] == FAIL)
    return [
        "## Targets (issue 9)",
        "",
        f"{passed} PASS, {failed} FAIL, {len(targets) - passed - failed} not measured in this "
        "run. Every number below comes from this run, with the same CPU pinning throughout "
        "(load on CPU "
        f"{results['machine']['load_cpus']}, every server on CPU "
        f"{results['machine']['server_cpus']}); the report checks them, no test does.",
        "",
        *table(["#", "target", "measured", "limit", "verdict"], rows, align="lllll"),
        "",
    ]


def _cell(values: dict[str, Any], key: str, render: Any) -> str:
    try:
        return str(render(values[key]))
    except (KeyError, TypeError, ZeroDivisionError):
        return "–"


def _row(run: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    t = run["targets"]
    floor, hops, page = t.get("1", {}), t.get("2", {}), t.get("3", {})
    through, idle, lean = t.get("4", {}), t.get("5", {}), t.get("6", {})
    rungs = floor.get("rungs_us", {})
    services = " / ".join(
        fmt_us(rungs[f"{s}.service"]) if f"{s}.service" in rungs else "–"
        for s in ("granian", "waitress", "gunicorn")
    )
    worst = "–"
    if "max_over_f0" in hops:
        worst = f"{hops['max_over_f0']:.1f} × F0 ({fmt_us(max(hops['added_us'].values()))})"
        before = (previous or {}).get("targets", {}).get("2", {}).get("added_us")
        if before:
            delta = max(hops["added_us"].values()) - max(before.values())
            worst += f", {delta:+.0f} µs"
    page_cell = "–"
    if "extracted_us" in page:
        page_cell = (
            f"{fmt_us(page['monolith_us'])} → {fmt_us(page['extracted_us'])} "
            f"(≤ {fmt_us(page['limit_us'])})"
        )
    ratios = " / ".join(
        f"×{through[w]['cpu_ratio']:.2f}" if w in through else "–"
        for w in ("post_page", "post_list")
    )
    rps = " / ".join(
        f"{through[w]['monolith_rps']:.0f} → {through[w]['extracted_rps']:.0f}"
        if w in through
        else "–"
        for w in ("post_page", "post_list")
    )
    verdicts = [v.get("verdict") for k, v in t.items() if k != "0"]
    label = run["label"] + (" *(this run, not recorded)*" if run.get("unrecorded") else "")
    return [
        label,
        run["date"],
        _cell(floor, "f0_us", fmt_us),
        services,
        worst,
        page_cell,
        rps,
        ratios,
        _cell(idle, "ms_per_s", lambda v: f"{v:.1f}"),
        _cell(lean, "overhead", lambda v: f"{v * 100:+.0f} %"),
        f"{verdicts.count(PASS)}/{len(verdicts)}",
    ]


def history_section(results: dict[str, Any]) -> list[str]:
    history = results.get("history") or {}
    runs = history.get("runs") or []
    if not runs:
        return []
    rows = [_row(run, runs[i - 1] if i else None) for i, run in enumerate(runs)]
    return [
        "## History: what each change bought",
        "",
        f"One row per recorded full run (`{history.get('path', '?')}`), oldest first; the label "
        "names the change (`bench/matrix.py --label`). F0 and service `/ping`: p50 round trips; "
        "worst hop: the largest p50 added by an extracted call over in-process, as a multiple "
        "of F0, and its change from the row above; page: the post page's p50, monolith → all "
        "extracted (the limit: monolith + 2 hops); req/s and CPU/request ratio: wrk at "
        "saturation on one server CPU, post page / post list; idle: all extracted, no "
        "requests; lean: the gateway's post list over the bare route, CPU per request.",
        "",
        *table(
            [
                "change",
                "date",
                "F0",
                "service /ping granian / waitress / gunicorn",
                "worst hop",
                "post page p50",
                "req/s monolith → extracted (page / list)",
                "CPU/req extracted ÷ monolith (page / list)",
                "idle ms/s",
                "lean overhead",
                "issue 9 targets PASS",
            ],
            rows,
            align="llrrrrrrrrr",
        ),
        "",
    ]
