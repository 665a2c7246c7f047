"""The monolith against everything extracted, side by side on the same server CPUs: the post
page's latency, the idle cost, throughput per CPU, and the lean baseline.

Both topologies run at once (each monolith under the production server, the four services of
the extracted one, all pinned to the server CPUs), so the post page can be asked of both in
interleaved blocks: a drift of the shared machine falls on both alike. Throughput runs one
wrk at a time, so the other topology only idles meanwhile (its idle cost is measured here
too). The lean baseline runs on the monolith's own database, under the same server.
"""

from __future__ import annotations

import functools
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import idle, throughput
from bench.plan import Plan
from bench.sampling import interleaved, log, stats_us, warm
from bench.topologies import Running, seed_http, start_topology
from blog.config import Config
from blog.domains import HTTP_SERVICES
from lab import procstat
from lab.keepalive import KeepAlive
from lab.processes import start_lean, worker_count
from lab.server_timing import parse_server_timing, summarize_server_timing
from lab.topology import Topology

MONOLITH = Topology("monolith", ())
EXTRACTED = Topology("all-http", HTTP_SERVICES)


def _page(client: KeepAlive, path: str, timings: list[str]) -> None:
    status, _, headers = client.exchange("GET", path)
    assert status == 200, status
    timings.append(headers.get("Server-Timing") or "")


def _call_order(header: str) -> list[str]:
    """The calls of one response, in the order they finished (Server-Timing lists each call
    as it ends): for calls made one after another, the order they were made in."""
    return [entry.label for entry in parse_server_timing(header) if entry.label != "total"]


def _post_page(
    running: dict[str, Running], seeds: dict[str, dict[str, Any]], plan: Plan, stack: ExitStack
) -> dict[str, Any]:
    """The post page (``GET /api/posts/<id>``, a post with comments) from each topology, one
    keep-alive client each, interleaved; with each response's Server-Timing (the calls the
    gateway made, their mode and time)."""
    timings: dict[str, list[str]] = {name: [] for name in running}
    variants = {}
    for name, topology in running.items():
        client = KeepAlive(topology.monolith.port)
        stack.callback(client.close)
        path = f"/api/posts/{seeds[name]['detail']}"
        variants[name] = functools.partial(_page, client, path, timings[name])
    warm(variants, calls=20)
    samples = interleaved(variants, rounds=plan.page_rounds, block=plan.page_block)
    return {
        "path": "/api/posts/<id>",
        **{name: stats_us(s) for name, s in samples.items()},
        "server_timing": {
            name: summarize_server_timing(headers[-len(samples[name]) :])
            for name, headers in timings.items()
        },
        "call_order": {name: _call_order(headers[-1]) for name, headers in timings.items()},
    }


def measure_head_to_head(
    base: Config,
    state: Path,
    plan: Plan,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    load_cpus_spec: str,
) -> dict[str, Any]:
    with ExitStack() as stack:
        log("head to head: starting the monolith and the all-extracted topology side by side")
        running = {
            t.name: start_topology(t, base, state / t.name, stack, server_cpus, server_cpus_spec)
            for t in (MONOLITH, EXTRACTED)
        }
        seeds = {}
        for name, topology in running.items():
            with KeepAlive(topology.monolith.port) as client:
                seeds[name] = seed_http(client, prefix=name)
        monolith = running[MONOLITH.name].monolith
        assert monolith.config_path is not None
        lean = start_lean(
            monolith.config_path,
            base.server,
            stack,
            workers=worker_count(base.server),
            cpus=server_cpus_spec,
            output=state / "lean.log",
        )
        assert lean.pid is not None
        lean_groups = {"lean": procstat.process_tree(lean.pid)}

        log("head to head: the post page, both topologies interleaved")
        page = _post_page(running, seeds, plan, stack)

        log(f"head to head: idle, {plan.idle_cost_seconds:g} s with no request")
        idle_seconds = plan.idle_cost_seconds
        idle_cost = idle.idle_ms_per_s(
            {name: topology.pids for name, topology in running.items()}, idle_seconds
        )

        def load(name: str, path: str) -> dict[str, Any]:
            if name == "lean":
                url, groups = lean.url + path, lean_groups
            else:
                url, groups = running[name].monolith.url + path, running[name].groups
            log(f"head to head: wrk {plan.wrk_seconds:g} s, {name} {path}")
            return throughput.saturate(
                url,
                groups,
                seconds=plan.wrk_seconds,
                warmup_seconds=plan.wrk_warmup_seconds,
                connections=plan.wrk_connections,
                load_cpus=load_cpus_spec,
            )

        page_paths = {name: f"/api/posts/{seeds[name]['detail']}" for name in seeds}
        runs: list[tuple[str, str, dict[str, Any]]] = []
        # Every comparison's runs sit symmetrically around the middle one (A B … B A), so a
        # machine that drifts steadily slower or faster during the part weighs on both sides
        # alike: the page as monolith, extracted, extracted, monolith; the list's monolith and
        # the lean route first and last; the extracted list in the middle.
        for name, what in (
            (MONOLITH.name, "post_list"),
            ("lean", "post_list"),
            (MONOLITH.name, "post_page"),
            (EXTRACTED.name, "post_page"),
            (EXTRACTED.name, "post_list"),
            (EXTRACTED.name, "post_page"),
            (MONOLITH.name, "post_page"),
            ("lean", "post_list"),
            (MONOLITH.name, "post_list"),
        ):
            path = "/api/posts" if what == "post_list" else page_paths[name]
            runs.append((name, what, load(name, path)))

        def combined(name: str, what: str) -> dict[str, Any]:
            return throughput.combine([r for n, w, r in runs if n == name and w == what])

        placement = {name: topology.placement() for name, topology in running.items()}
        placement["lean"] = {
            "lean": sorted({procstat.cpus_allowed(p) for p in lean_groups["lean"]})
        }
        return {
            "server": {
                "name": base.server.name,
                "monolith_workers": worker_count(base.server),
                "threads": base.server.threads,
                "monolith_argv": monolith.argv,
            },
            "placement": placement,
            "page": page,
            "idle": {"seconds": idle_seconds, "ms_per_s": idle_cost},
            "throughput": {
                what: {name: combined(name, what) for name in (MONOLITH.name, EXTRACTED.name)}
                for what in ("post_page", "post_list")
            },
            "lean": {
                "monolith": combined(MONOLITH.name, "post_list"),
                "lean": combined("lean", "post_list"),
            },
            "wrk_order": [[name, what] for name, what, _ in runs],
            "wrk": {
                "connections": plan.wrk_connections,
                "threads": 1,
                "seconds": plan.wrk_seconds,
                "load_cpus": load_cpus_spec,
            },
        }
