"""Throughput per CPU: wrk at saturation, and the servers' CPU time per request it cost."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lab import procstat, wrk


def saturate(
    url: str,
    groups: Mapping[str, list[int]],
    *,
    seconds: float,
    warmup_seconds: float,
    connections: int,
    load_cpus: str | None,
) -> dict[str, Any]:
    """wrk on ``url`` for ``seconds`` (after a warm-up run that is thrown away), pinned to
    ``load_cpus``; CPU time summed over every process of ``groups`` (a server's master and
    workers, per group) from /proc, divided by the requests wrk completed. ``utilization`` is
    the servers' CPU seconds per second of the run: about the server CPUs' count at
    saturation."""
    wrk.run(url, seconds=warmup_seconds, connections=connections, cpus=load_cpus)
    pids = [pid for group in groups.values() for pid in group]
    before = {g: procstat.cpu_ns(p) for g, p in groups.items()}
    started = time.monotonic()
    result = wrk.run(url, seconds=seconds, connections=connections, cpus=load_cpus)
    wall = time.monotonic() - started
    after = {g: procstat.cpu_ns(p) for g, p in groups.items()}
    if result.errors:
        raise wrk.WrkFailed(f"{url}: {result.errors} errors under load")
    cpu_ns = {g: after[g] - before[g] for g in groups}
    total_ns = sum(cpu_ns.values())
    return {
        "url_path": url.split("/", 3)[-1],
        "requests": result.requests,
        "seconds": result.seconds,
        "cpu_ns": total_ns,
        "cpu_ns_by_group": cpu_ns,
        "wall_seconds": wall,
        "processes": len(pids),
        "latency_p50_us": result.latency_p50_us,
        "latency_p99_us": result.latency_p99_us,
        **per_request(result.requests, result.seconds, total_ns, wall),
    }


def per_request(requests: int, seconds: float, cpu_ns: float, wall: float) -> dict[str, float]:
    """Requests per second, CPU µs per request, and the servers' CPU use (CPUs)."""
    return {
        "rps": requests / seconds if seconds else 0.0,
        "cpu_us_per_request": cpu_ns / 1000 / requests if requests else 0.0,
        "utilization": cpu_ns / 1e9 / wall if wall else 0.0,
    }


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of the same thing (taken apart in time, so drift falls on both sides of a
    comparison) as one: totals summed, then divided again."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    cpu_ns = sum(r["cpu_ns"] for r in runs)
    wall = sum(r["wall_seconds"] for r in runs)
    by_group: dict[str, int] = {}
    for r in runs:
        for group, ns in r.get("cpu_ns_by_group", {}).items():
            by_group[group] = by_group.get(group, 0) + ns
    return {
        "requests": requests,
        "seconds": seconds,
        "cpu_ns": cpu_ns,
        "cpu_us_per_request_by_group": {
            group: ns / 1000 / requests if requests else 0.0 for group, ns in by_group.items()
        },
        "wall_seconds": wall,
        "runs": len(runs),
        "latency_p50_us": sorted(r["latency_p50_us"] for r in runs)[len(runs) // 2],
        "latency_p99_us": max(r["latency_p99_us"] for r in runs),
        **per_request(requests, seconds, cpu_ns, wall),
    }
