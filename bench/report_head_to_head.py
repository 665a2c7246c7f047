"""The report's monolith-against-all-extracted section and its chart: the post page and its
critical path, throughput per CPU with wrk, the idle cost, and the lean baseline."""

from __future__ import annotations

from typing import Any

from bench.report_tables import others, table
from bench.targets import fmt_us as us
from bench.targets import page_hop_us

SATURATED = 0.9
"""Server CPUs busy below this (per server CPU) means wrk did not saturate them: other work took
the CPU, or the servers waited on something; the run's numbers are then worth less."""
WHAT = {"post_page": "post page `GET /api/posts/<id>`", "post_list": "post list `GET /api/posts`"}


def critical_path(timing: dict[str, Any], order: list[str]) -> str:
    """The page's calls as Server-Timing reports them (median ms per request, mode), in the
    order one response listed them (each call is listed when it ends), and whether they ran one
    after another (their sum within the gateway's whole request) or overlapped."""
    domains = timing.get("domains", {})
    total = timing.get("total_median_ms")
    if not domains or total is None:
        return "no Server-Timing"
    mode = {call: info["mode"] for info in domains.values() for call in info["calls"]}
    summed = sum(info["median_ms"] for info in domains.values())
    calls = "; ".join(
        f"{', '.join(f'`{c}`' for c in info['calls'])} {info['median_ms']:.2f} ms "
        f"({info['mode']}, {info['calls_per_request']:g} per page)"
        for info in domains.values()
    )
    remote = [c for c in order if mode.get(c) == "http"]
    if summed <= total:
        path = " → ".join(f"`{c}`" for c in order)
        hops = f": {len(remote)} sequential hop{'s' if len(remote) != 1 else ''}" if remote else ""
        shape = f"one after another, {path}{hops}"
    else:
        shape = (
            f"the calls overlap (their times sum to {summed:.2f} ms, more than the whole "
            "request): the critical path is shorter than their sum"
        )
    return f"{shape}. Calls: {calls}; the gateway's whole request {total:.2f} ms"


def in_page_hops(timing: dict[str, Any], hops: dict[str, Any]) -> str:
    """What each of the page's domains costs more when extracted, from the page's own
    Server-Timing (all extracted minus monolith, median ms per page): the hop as the page pays
    it, with the gateway and the services sharing the server CPUs; split into the service's
    app and the hop itself, each beside part 3's (``hops``) for the same call."""
    far = timing.get("all-http", {}).get("domains", {})
    near = timing.get("monolith", {}).get("domains", {})
    parts = []
    for domain, info in far.items():
        if domain not in near or info["mode"] != "http":
            continue
        here = near[domain]["median_ms"] * 1000
        part = (
            f"{', '.join(f'`{c}`' for c in info['calls'])} "
            f"{info['median_ms'] * 1000 - here:+.0f} µs"
        )
        service = info.get("service_median_ms")
        if service is not None:
            service *= 1000
            warm = hops.get(info["calls"][0], {}) if len(info["calls"]) == 1 else {}
            app_warm = hop_warm = ""
            if "in_service" in warm:
                app_warm = f", part 3 {warm['in_service']['p50']:.0f}"
                hop_warm = f" (part 3: {warm['http']['p50'] - warm['in_service']['p50']:.0f})"
            part += (
                f": {service:.0f} µs in the service's app (the call in the monolith "
                f"{here:.0f}{app_warm}), {info['median_ms'] * 1000 - service:.0f} µs the hop "
                f"itself{hop_warm}"
            )
        parts.append(part)
    return "; ".join(parts)


def _colocation(results: dict[str, Any]) -> str:
    """Part 1's round trip to the service's ``/ping`` with the client on the server CPU,
    against the same across CPUs: whether sharing one CPU is what makes a hop dearer."""
    ladder = results.get("ladder") or {}
    together = (ladder.get("colocated") or {}).get("service")
    if not together:
        return ""
    apart = ladder["rungs"][f"{ladder['configured_server']}.service"]["p50"]
    return (
        f"; a round trip to the service's `/ping` costs {us(together['p50'])} with both ends "
        f"on the server CPU and {us(apart)} across CPUs (part 1)"
    )


def wrk_order_sentence(head: dict[str, Any]) -> str:
    """The wrk runs' order: each comparison's runs sit symmetrically in time, so a steady drift
    of the machine's speed weighs on both of its sides alike."""
    order = head.get("wrk_order")
    if not order:  # a run from before the order was recorded
        return (
            "The monolith's post list ran twice (before and after the lean route's two runs), "
            "summed."
        )
    names = {"monolith": "monolith", "all-http": "all extracted", "lean": "lean route"}
    steps = ", ".join(f"{names.get(name, name)} {what.replace('_', ' ')}" for name, what in order)
    return (
        f"The runs went in this order: {steps}; each comparison's runs sit symmetrically in "
        "time, so a steady drift of the machine's speed weighs on both of its sides alike, and "
        "runs of the same thing are summed."
    )


def _run(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['rps']:.0f}",
        us(r["cpu_us_per_request"]),
        f"{r['utilization']:.2f}" + (" ⚠" if r["utilization"] < SATURATED else ""),
        f"{us(r['latency_p50_us'])} / {us(r['latency_p99_us'])}",
        f"{r['requests']} in {r['seconds']:.1f} s"
        + (f" ({r['runs']} runs)" if r["runs"] > 1 else ""),
    ]


def cpu_by_process(head: dict[str, Any]) -> list[str]:
    """Each endpoint's server CPU per request split by process (the same wrk runs): where the
    all-extracted topology spends what the monolith does not, and, for the post page, what one
    extracted call costs in CPU at both ends (the extra CPU over the extracted calls a page
    makes, from its Server-Timing)."""
    lines = []
    calls = sum(
        info["calls_per_request"]
        for info in head["page"]["server_timing"].get("all-http", {}).get("domains", {}).values()
        if info["mode"] == "http"
    )
    for what, runs in head["throughput"].items():
        mono, far = runs["monolith"], runs["all-http"]
        split = far.get("cpu_us_per_request_by_group")
        if not split:
            continue
        parts = ", ".join(
            f"{'the gateway' if group == 'monolith' else group} {us(cpu)}"
            for group, cpu in sorted(split.items(), key=lambda item: -item[1])
            if cpu >= 1  # the services this endpoint never calls
        )
        extra = far["cpu_us_per_request"] - mono["cpu_us_per_request"]
        line = (
            f"- {WHAT[what]}: the monolith {us(mono['cpu_us_per_request'])}; all extracted "
            f"{us(far['cpu_us_per_request'])}: {parts}"
        )
        if what == "post_page" and calls:
            line += (
                f". The {extra / 1000:.2f} ms more than the monolith, over the page's {calls:g} "
                f"extracted calls: {us(extra / calls)} of CPU per call, both ends together "
                "(the gateway's client, the service's server, framework and hooks, the kernel "
                "between them, and the work done cold that the monolith does warm)"
            )
        lines.append(line + ".")
    if not lines:
        return []
    return ["**Where the CPU goes** (the same runs, per process, per request):", "", *lines, ""]


def head_to_head_section(results: dict[str, Any]) -> list[str]:
    head = results.get("head_to_head")
    if not head:
        return []
    page = head["page"]
    mono, far = page["monolith"], page["all-http"]
    hop = page_hop_us(results)
    timing = page["server_timing"]
    order = page.get("call_order", {})
    hop_line = ""
    if hop:
        hop_us, basis = hop
        hop_line = (
            f" One hop ({', '.join(f'`{b}`' for b in basis)}, part 3's median added p50) costs "
            f"{us(hop_us)}: the page pays {(far['p50'] - mono['p50']) / hop_us:.1f} hops' worth "
            f"over the monolith."
        )
    server = head["server"]
    wrk = head["wrk"]
    rows = []
    for what, runs in head["throughput"].items():
        for name in ("monolith", "all-http"):
            ratio = runs[name]["cpu_us_per_request"] / runs["monolith"]["cpu_us_per_request"]
            rows.append([WHAT[what], name, *_run(runs[name]), f"×{ratio:.2f}"])
    lean, lean_mono = head["lean"]["lean"], head["lean"]["monolith"]
    lean_rows = [
        ["bare Flask + SQLAlchemy route (`lab/lean_app.py`)", *_run(lean), "×1.00"],
        [
            "the gateway's `GET /api/posts` (monolith)",
            *_run(lean_mono),
            f"×{lean_mono['cpu_us_per_request'] / lean['cpu_us_per_request']:.2f}",
        ],
    ]
    idle = head["idle"]
    part3_hops = (results.get("floors") or {}).get("hops", {})
    placement = "; ".join(
        f"{topology}: " + ", ".join(f"{g} CPU {','.join(c)}" for g, c in groups.items())
        for topology, groups in head["placement"].items()
    )
    run_columns = [
        "req/s",
        "server CPU / request",
        "server CPUs busy",
        "wrk latency p50 / p99",
        "requests",
    ]
    return [
        "## 4. The monolith against everything extracted: post page, throughput per CPU, "
        "idle cost, lean baseline",
        "",
        f"Both topologies run side by side, each monolith as `make serve` runs it "
        f"(`blog.wsgi:app` under {server['name']}, {server['monolith_workers']} workers × "
        f"{server['threads']} threads), each extracted service under the same server (1 worker), "
        f"events inline (so the monolith long-polls each publisher's event feed). Placement, "
        f"read back from /proc: {placement}. Other work's CPU meanwhile: {others(head)}.",
        "",
        f"**The post page** (`{page['path']}`, a seeded post with 5 comments; one keep-alive "
        f"`http.client` client per topology, interleaved, n = {mono['n']} each): monolith "
        f"p50 {us(mono['p50'])} (p99 {us(mono['p99'])}), all extracted p50 {us(far['p50'])} "
        f"(p99 {us(far['p99'])}).{hop_line}",
        "",
        f"- **the hop as the page pays it** (its Server-Timing, all extracted − monolith, per "
        f"call): {in_page_hops(timing, part3_hops)}. Here the gateway runs under its server "
        "and shares the server CPU with the services, where part 3's client is the bench "
        f"process on a CPU of its own{_colocation(results)}.",
        "- **critical path**, all extracted: "
        f"{critical_path(timing.get('all-http', {}), order.get('all-http', []))}.",
        "- the same page in the monolith: "
        f"{critical_path(timing.get('monolith', {}), order.get('monolith', []))}.",
        "",
        f"**Throughput per CPU**: wrk ({wrk['threads']} thread, {wrk['connections']} keep-alive "
        f"connections, {wrk['seconds']:g} s after a 1 s warm-up, pinned with taskset to CPU "
        f"{wrk['load_cpus']}) at saturation; server CPU per request is the CPU time of every "
        "server process of the topology (the monolith's, and all-extracted the four services' "
        'too, from /proc) over the requests wrk completed; "server CPUs busy" near the '
        "server CPU count shows saturation (⚠ below 0.9: the servers did not get the CPU to "
        f"themselves). {wrk_order_sentence(head)}",
        "",
        *table(
            ["endpoint", "topology", *run_columns, "CPU/request ÷ monolith"], rows, "ll" + "r" * 6
        ),
        "",
        *cpu_by_process(head),
        f"**Idle cost**, no requests for {idle['seconds']:g} s, every process of the topology "
        f"together: all extracted {idle['ms_per_s']['all-http']:.1f} ms of CPU a second, the "
        f"monolith alone {idle['ms_per_s']['monolith']:.1f}.",
        "",
        "**The lean baseline**: the gateway's post list against a bare Flask + SQLAlchemy route "
        "running the posts service's own two statements (a count, one page; Core, built once) on "
        f"the monolith's database, under the same server ({server['name']}, the same workers) "
        "on the same CPU; what the gateway adds per request is request ids, timing and "
        "Server-Timing, the domain interface and DTOs, logging and error handling:",
        "",
        *table(["route", *run_columns, "CPU/request ÷ bare"], lean_rows),
        "",
    ]


def chart_throughput(ax: Any, results: dict[str, Any]) -> None:
    """Requests per second (bars) and server CPU per request (labels), monolith against all
    extracted, and the lean route beside the post list."""
    head = results.get("head_to_head")
    if not head:
        ax.set_axis_off()
        return
    bars = []
    for what, runs in head["throughput"].items():
        for name in ("monolith", "all-http"):
            bars.append((f"{what.replace('_', ' ')}\n{name}", runs[name]))
    bars.append(("post list\nbare route", head["lean"]["lean"]))
    colors = ["#4c72b0", "#dd8452", "#4c72b0", "#dd8452", "#55a868"]
    x = list(range(len(bars)))
    values = [r["rps"] for _, r in bars]
    ax.bar(x, values, color=colors[: len(bars)])
    for i, (_, r) in enumerate(bars):
        ax.text(
            i,
            r["rps"],
            f"{r['rps']:.0f}/s\n{r['cpu_us_per_request'] / 1000:.2f} ms CPU/req",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(x, [label for label, _ in bars], fontsize=8)
    ax.set_ylim(0, max(values) * 1.3)
    ax.set_ylabel("requests per second on one server CPU (wrk)")
    ax.set_title("Throughput per CPU at saturation, and server CPU per request")
