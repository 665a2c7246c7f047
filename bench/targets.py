"""Issue 9's targets, judged from one run's results: each one's measured number, its limit and
PASS or FAIL (or "not measured" when the run skipped the part it needs).

The report prints them at its top and the history keeps them per run, so this is the one place
a limit is written down.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

INTERFACE_TARGET_US = 1.0
"""The in-process interface adds at most this over a direct call (an earlier target, kept)."""
HOP_TARGET_F0 = 3.0
"""An extracted hop adds at most this many F0 over the in-process call, at p50."""
PAGE_TARGET_HOPS = 2
"""The post page, all extracted: at most the monolith's p50 plus this many hops."""
CPU_TARGET_RATIO = 2.0
"""All extracted: at most this many times the monolith's server CPU per request."""
IDLE_TARGET_MS_PER_S = 5.0
"""All extracted, no requests: at most this much CPU (ms) per second, every process together."""
LEAN_TARGET_OVERHEAD = 0.25
"""The gateway's post list: at most this much more CPU per request than the lean route."""
PRODUCTION_SERVERS = ("granian", "gunicorn", "waitress")
MONOLITH_TARGET = "blog.wsgi:app"

PASS, FAIL, UNMEASURED = "PASS", "FAIL", "not measured"


@dataclass
class Target:
    """One target: ``measured`` and ``limit`` are the sentences the report prints; ``values``
    the numbers the history keeps."""

    key: str
    title: str
    measured: str = "–"
    limit: str = "–"
    verdict: str = UNMEASURED
    values: dict[str, Any] = field(default_factory=dict)


def fmt_us(us: float) -> str:
    """Microseconds, in the unit a person reads best."""
    if us < 1:
        return f"{us * 1000:.0f} ns"
    if us < 1000:
        return f"{us:.0f} µs" if us >= 100 else f"{us:.1f} µs"
    if us < 1_000_000:
        ms = us / 1000
        return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    return f"{us / 1e6:.2f} s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def f0_us(results: dict[str, Any]) -> float | None:
    """F0 at p50: the ladder's socket rung."""
    ladder = results.get("ladder")
    return float(ladder["rungs"]["socket"]["p50"]) if ladder else None


def hop_costs(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per measured call: the p50 it adds over HTTP, and that as a multiple of the F0 measured
    alongside it (interleaved with the call; the ladder's F0 for a run without that)."""
    floors = results.get("floors")
    if not floors:
        return {}
    fallback = f0_us(results)
    out = {}
    for name, hop in floors["hops"].items():
        added = hop["http"]["p50"] - hop["inprocess"]["p50"]
        f0 = hop["f0"]["p50"] if "f0" in hop else fallback
        if f0:
            out[name] = {"added_us": added, "f0_us": f0, "over_f0": added / f0}
    return out


def page_calls(results: dict[str, Any]) -> list[str]:
    """The domain calls the post page makes, all extracted, from its Server-Timing header."""
    head = results.get("head_to_head")
    if not head:
        return []
    timing = head["page"]["server_timing"].get("all-http", {})
    return [call for info in timing.get("domains", {}).values() for call in info["calls"]]


def page_hop_us(results: dict[str, Any]) -> tuple[float, list[str]] | None:
    """The cost of one of the page's hops: the median p50 added cost of the calls the page
    makes that part 1 measured (all measured calls when it makes none of them)."""
    costs = hop_costs(results)
    if not costs:
        return None
    matched = [c for c in page_calls(results) if c in costs]
    chosen = matched or list(costs)
    return statistics.median(costs[c]["added_us"] for c in chosen), chosen


def _interface(results: dict[str, Any]) -> Target:
    target = Target("0", "in-process interface (kept from before)")
    floors = results.get("floors")
    target.limit = f"TimedDomain adds ≤ {INTERFACE_TARGET_US:g} µs over a direct call"
    if floors:
        probe = floors["probe"]
        added = probe["timed"]["p50"] - probe["direct"]["p50"]
        target.measured = f"{fmt_us(added)} added"
        target.verdict = _verdict(added <= INTERFACE_TARGET_US)
        target.values = {"added_us": added}
    return target


def _floor(results: dict[str, Any]) -> Target:
    target = Target("1", "F0 is the raw round trip, with the whole ladder beside it")
    target.limit = "F0 measured on the server CPUs, below every rung; every rung measured"
    ladder = results.get("ladder")
    if not ladder:
        return target
    rungs = {k: v["p50"] for k, v in ladder["rungs"].items()}
    f0 = rungs["socket"]
    kinds = ("wsgi", *ladder.get("frameworks", ["flask"]), "service")
    expected = {"socket", "transport", "client.get_post", "stdlib.get_post"} | {
        f"{server}.{kind}" for server in ladder["servers"] for kind in kinds
    }
    placed = ladder["placement"].get("socket") == results["machine"]["server_cpus"]
    lowest = all(f0 <= v for k, v in rungs.items() if k != "socket")
    services = ", ".join(
        f"{server} {fmt_us(rungs[f'{server}.service'])}" for server in ladder["servers"]
    )
    target.measured = f"F0 = {fmt_us(f0)}; {len(rungs)} rungs; service /ping: {services}"
    target.verdict = _verdict(expected <= set(rungs) and placed and lowest)
    target.values = {"f0_us": f0, "rungs_us": rungs}
    return target


def _hops(results: dict[str, Any]) -> Target:
    target = Target("2", "each extracted hop adds ≤ 3 × F0 (p50), every call measured")
    costs = hop_costs(results)
    target.limit = f"≤ {HOP_TARGET_F0:g} × F0 for all calls"
    if not costs:
        return target
    worst = max(costs, key=lambda name: costs[name]["over_f0"])
    w = costs[worst]
    passing = sum(1 for c in costs.values() if c["over_f0"] <= HOP_TARGET_F0)
    target.measured = (
        f"worst {worst}: +{fmt_us(w['added_us'])} = {w['over_f0']:.1f} × F0 "
        f"({fmt_us(w['f0_us'])}); {passing}/{len(costs)} calls within"
    )
    target.limit = f"≤ {HOP_TARGET_F0:g} × F0 = {fmt_us(HOP_TARGET_F0 * w['f0_us'])}"
    target.verdict = _verdict(passing == len(costs))
    target.values = {
        "max_over_f0": w["over_f0"],
        "worst": worst,
        "added_us": {name: c["added_us"] for name, c in costs.items()},
    }
    return target


def _page(results: dict[str, Any]) -> Target:
    target = Target("3", "post page, all extracted ≤ monolith p50 + 2 hops")
    head = results.get("head_to_head")
    hop = page_hop_us(results)
    if not head or hop is None:
        return target
    hop_us, basis = hop
    mono, far = head["page"]["monolith"]["p50"], head["page"]["all-http"]["p50"]
    limit = mono + PAGE_TARGET_HOPS * hop_us
    target.measured = f"{fmt_us(far)} all extracted, {fmt_us(mono)} monolith"
    target.limit = (
        f"≤ {fmt_us(mono)} + {PAGE_TARGET_HOPS} × {fmt_us(hop_us)} (hop: "
        f"{', '.join(basis)}) = {fmt_us(limit)}"
    )
    target.verdict = _verdict(far <= limit)
    target.values = {
        "monolith_us": mono,
        "extracted_us": far,
        "hop_us": hop_us,
        "limit_us": limit,
        "hops_paid": (far - mono) / hop_us if hop_us else None,
    }
    return target


def _throughput(results: dict[str, Any]) -> Target:
    target = Target("4", "throughput per CPU: all extracted ≤ 2 × the monolith's CPU/request")
    target.limit = f"CPU per request ratio ≤ {CPU_TARGET_RATIO:g} on the post page and the list"
    head = results.get("head_to_head")
    if not head:
        return target
    parts, values = [], {}
    for what, runs in head["throughput"].items():
        mono, far = runs["monolith"], runs["all-http"]
        ratio = far["cpu_us_per_request"] / mono["cpu_us_per_request"]
        values[what] = {
            "monolith_rps": mono["rps"],
            "extracted_rps": far["rps"],
            "monolith_cpu_us": mono["cpu_us_per_request"],
            "extracted_cpu_us": far["cpu_us_per_request"],
            "cpu_ratio": ratio,
        }
        parts.append(
            f"{what.replace('_', ' ')}: {mono['rps']:.0f} → {far['rps']:.0f} req/s, "
            f"{fmt_us(mono['cpu_us_per_request'])} → {fmt_us(far['cpu_us_per_request'])} "
            f"CPU/req (×{ratio:.2f})"
        )
    target.measured = "; ".join(parts)
    target.verdict = _verdict(all(v["cpu_ratio"] <= CPU_TARGET_RATIO for v in values.values()))
    target.values = values
    return target


def _idle(results: dict[str, Any]) -> Target:
    target = Target("5", "idle cost, all extracted, every process together")
    target.limit = f"≤ {IDLE_TARGET_MS_PER_S:g} ms of CPU per second"
    head = results.get("head_to_head")
    if not head:
        return target
    idle = head["idle"]["ms_per_s"]
    target.measured = (
        f"{idle['all-http']:.1f} ms/s over {head['idle']['seconds']:g} s "
        f"(monolith alone: {idle['monolith']:.1f})"
    )
    target.verdict = _verdict(idle["all-http"] <= IDLE_TARGET_MS_PER_S)
    target.values = {"ms_per_s": idle["all-http"], "monolith_ms_per_s": idle["monolith"]}
    return target


def _lean(results: dict[str, Any]) -> Target:
    target = Target("6", "lean baseline: the gateway's post list ≤ 25 % over a bare route")
    target.limit = f"CPU per request ≤ {1 + LEAN_TARGET_OVERHEAD:.2f} × the bare route's"
    head = results.get("head_to_head")
    if not head:
        return target
    mono, lean = head["lean"]["monolith"], head["lean"]["lean"]
    overhead = mono["cpu_us_per_request"] / lean["cpu_us_per_request"] - 1
    target.measured = (
        f"{overhead * 100:+.0f} % CPU/request ({fmt_us(lean['cpu_us_per_request'])} → "
        f"{fmt_us(mono['cpu_us_per_request'])}); {lean['rps']:.0f} → {mono['rps']:.0f} req/s"
    )
    target.verdict = _verdict(overhead <= LEAN_TARGET_OVERHEAD)
    target.values = {
        "overhead": overhead,
        "monolith_rps": mono["rps"],
        "lean_rps": lean["rps"],
        "monolith_cpu_us": mono["cpu_us_per_request"],
        "lean_cpu_us": lean["cpu_us_per_request"],
    }
    return target


def _server(results: dict[str, Any]) -> Target:
    target = Target("7", "the monolith under the production server in the gateway numbers")
    target.limit = f"`{MONOLITH_TARGET}` under the server config.yaml names, not a dev server"
    head = results.get("head_to_head")
    if not head:
        return target
    server = head["server"]
    argv = " ".join(server["monolith_argv"])
    served = MONOLITH_TARGET in argv and f"-m {server['name']}" in argv
    target.measured = (
        f"{server['name']}, {_count(server['monolith_workers'], 'worker')} × "
        f"{_count(server['threads'], 'thread')}, `{MONOLITH_TARGET}`"
    )
    target.verdict = _verdict(served and server["name"] in PRODUCTION_SERVERS)
    target.values = {"server": server["name"]}
    return target


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target, in the issue's order (and the kept interface target first)."""
    judges = (_interface, _floor, _hops, _page, _throughput, _idle, _lean, _server)
    return [asdict(judge(results)) for judge in judges]
