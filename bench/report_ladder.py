"""The report's F0-and-ladder section and its chart: where a hop's time goes, rung by rung."""

from __future__ import annotations

from typing import Any

from bench.report_tables import others, table
from bench.targets import HOP_TARGET_F0, fmt_us

COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def framework(ladder: dict[str, Any]) -> str:
    """The services' framework (older runs measured Flask only)."""
    return str(ladder.get("service_framework", "flask"))


def _steps(ladder: dict[str, Any], server: str) -> list[float]:
    """F0, then what the server, the services' framework (bare) and the service's hooks each
    add (p50 differences)."""
    rungs = ladder["rungs"]
    f0 = rungs["socket"]["p50"]
    wsgi = rungs[f"{server}.wsgi"]["p50"]
    bare = rungs[f"{server}.{framework(ladder)}"]["p50"]
    service = rungs[f"{server}.service"]["p50"]
    return [f0, wsgi - f0, bare - wsgi, service - bare]


def server_cpu(ladder: dict[str, Any], frameworks: list[str]) -> list[str]:
    """Each rung's server CPU per request: what a hop costs the machine at the serving end,
    which latency alone does not show (a server may answer fast and still burn CPU in threads
    handing the request to each other)."""
    cpu = ladder.get("server_cpu_us_per_request")
    if not cpu:
        return []
    f0 = cpu["socket"]
    kinds = ["wsgi", *frameworks, "service"]
    rows = [
        [
            server,
            *(fmt_us(cpu[f"{server}.{kind}"]) for kind in kinds),
            f"{cpu[f'{server}.service'] / f0:.1f} ×",
        ]
        for server in ladder["servers"]
    ]
    return [
        "**Server CPU per request**, the same rungs: the CPU time of each rung's server "
        "processes (every thread, from schedstat) while the rungs were sampled, over the "
        f"requests it answered. F0's socket server spends {fmt_us(f0)} a request (its kernel "
        "work included); the rest of a hop's CPU is at the client's end.",
        "",
        *table(
            [
                "server",
                "bare WSGI",
                *(f"bare {k}" for k in frameworks),
                "service /ping",
                "service ÷ F0's server",
            ],
            rows,
        ),
        "",
    ]


def _client_rungs(ladder: dict[str, Any]) -> dict[str, str]:
    """The rungs a client asks in different ways, each with what it is."""
    configured = ladder["configured_server"]
    return {
        "socket": "F0: `http.client` → a socket server answering a fixed response",
        f"{configured}.service": f"`http.client` → the posts service's `/ping` under {configured}",
        "transport": f"our transport stack ({ladder['transport_stack']}) → the same `/ping`",
        "stdlib.get_post": "`http.client` → `GET /posts/<id>` on the service, with the credential",
        "client.get_post": 'the whole client (`blog.wiring.connect("posts")`) → `get_post(id)`',
    }


def _both_ends_cpu(ladder: dict[str, Any]) -> list[str]:
    in_a_row = ladder.get("in_a_row_cpu_us_per_request")
    if not in_a_row:
        return []
    rows = [
        [
            what,
            fmt_us(in_a_row[rung]["client"]),
            fmt_us(in_a_row[rung]["server"]),
            fmt_us(in_a_row[rung]["client"] + in_a_row[rung]["server"]),
        ]
        for rung, what in _client_rungs(ladder).items()
        if rung in in_a_row
    ]
    return [
        "**Both ends of a hop in CPU**, each request made in a row after the interleaved "
        "sampling: the client's end is the bench thread's CPU time per call (kernel time "
        "included: on loopback the sender's system call also runs the receiver's TCP work), the "
        "server's its processes', as above:",
        "",
        *table(["request", "client CPU", "server CPU", "both ends"], rows),
        "",
    ]


def ladder_section(results: dict[str, Any]) -> list[str]:
    ladder = results.get("ladder")
    if not ladder:
        return []
    rungs = ladder["rungs"]
    f0 = rungs["socket"]["p50"]
    frameworks = [k for k in ladder.get("frameworks", ["flask"]) if f"granian.{k}" in rungs]
    used = framework(ladder)
    server_rows = []
    for server in ladder["servers"]:
        _, wsgi, bare, hooks = _steps(ladder, server)
        service = rungs[f"{server}.service"]
        mark = " (configured)" if server == ladder["configured_server"] else ""
        server_rows.append(
            [
                f"{server}{mark}",
                fmt_us(rungs[f"{server}.wsgi"]["p50"]),
                *(fmt_us(rungs[f"{server}.{k}"]["p50"]) for k in frameworks),
                f"{fmt_us(service['p50'])} (p99 {fmt_us(service['p99'])})",
                f"{service['p50'] / f0:.1f} ×",
                f"{wsgi:+.0f} µs",
                f"{bare:+.0f} µs",
                f"{hooks:+.0f} µs",
            ]
        )
    configured = ladder["configured_server"]
    service = rungs[f"{configured}.service"]["p50"]
    transport = rungs["transport"]["p50"]
    stdlib, client = rungs["stdlib.get_post"]["p50"], rungs["client.get_post"]["p50"]
    client_rows = [[what, rungs[rung]] for rung, what in _client_rungs(ladder).items()]
    colocated = ladder.get("colocated")
    if colocated:
        cpu = results["machine"]["server_cpus"]
        client_rows += [
            [f"F0 with the client on the server CPU ({cpu}) too", colocated["socket"]],
            [
                f"the service's `/ping` under {configured}, the client on CPU {cpu} too",
                colocated["service"],
            ],
        ]
    rows = [
        [what, fmt_us(s["p50"]), fmt_us(s["p99"]), f"{s['p50'] / f0:.1f} ×", str(s["n"])]
        for what, s in client_rows
    ]
    placement = ", ".join(sorted(set(ladder["placement"].values())))
    return [
        "## 1. F0 and the ladder: what a hop costs, rung by rung",
        "",
        "The same `GET /ping` answer (`pong`) from ever thicker servers, every server on CPU "
        f"{placement} (one worker each), asked from the bench process on CPU "
        f"{results['machine']['load_cpus']} over one keep-alive `http.client` connection per "
        "rung (TCP_NODELAY), all rungs interleaved in shuffled blocks. **F0** is the bottom "
        "rung: a minimal Python socket server answering a fixed HTTP response, i.e. the kernel's "
        "loopback round trip with Python at both ends. An extracted hop may add at most "
        f"{HOP_TARGET_F0:g} × F0 = {fmt_us(HOP_TARGET_F0 * f0)} (part 3). Other work's CPU "
        f"meanwhile: {others(ladder)}.",
        "",
        "**Each server**: with a bare WSGI function, with each bare framework ("
        + ", ".join(frameworks)
        + "), and the posts service's `/ping` under it (the services answer through "
        f"**{used}**: its framework and its hooks, request ids, Server-Timing, the credential "
        "bookkeeping; `/ping` itself is public). The last three columns are what each layer "
        f"adds (p50 differences; the framework step is bare {used}'s):",
        "",
        *table(
            [
                "server",
                "bare WSGI p50",
                *(f"bare {k} p50" for k in frameworks),
                "service /ping p50",
                "service ÷ F0",
                "server adds",
                f"{used} adds",
                "service hooks add",
            ],
            server_rows,
        ),
        "",
        *server_cpu(ladder, frameworks),
        *_both_ends_cpu(ladder),
        "**Our client**, against the service under the configured server (the last two rows: "
        "the client moved onto the server CPU, as a gateway and its services share it in part "
        "4; measured apart, after the others):",
        "",
        *table(["rung", "p50", "p99", "÷ F0", "n"], rows),
        "",
        f"So under {configured} a hop's floor is {fmt_us(service)}: F0 {fmt_us(f0)}, then "
        + ", ".join(
            f"{name} {step:+.0f} µs"
            for name, step in zip(
                ("server", used, "service hooks"), _steps(ladder, configured)[1:], strict=True
            )
        )
        + f"; our transport stack adds {transport - service:+.0f} µs to `/ping`, and the whole "
        f"client adds {client - stdlib:+.0f} µs to a real call over `http.client` "
        "(credential, encoding, decoding to a DTO, breaker, retries, connection pool).",
        "",
    ]


def chart_ladder(ax: Any, results: dict[str, Any]) -> None:
    """Stacked bars per server: F0, server, framework, hooks; and our client's transport on top of
    the configured server's service."""
    ladder = results.get("ladder")
    if not ladder:
        ax.set_axis_off()
        return
    rungs = ladder["rungs"]
    servers = list(ladder["servers"])
    configured = ladder["configured_server"]
    labels = [f"{s} service /ping" for s in servers] + [f"client transport ({configured})"]
    steps = [_steps(ladder, s) for s in servers]
    steps.append([*_steps(ladder, configured)])
    client_extra = [0.0] * len(servers) + [
        rungs["transport"]["p50"] - rungs[f"{configured}.service"]["p50"]
    ]
    y = list(range(len(labels)))
    left = [0.0] * len(labels)
    names = ("F0", "server", f"bare {framework(ladder)}", "service hooks")
    for i, name in enumerate(names):
        values = [max(s[i], 0.0) for s in steps]
        ax.barh(y, values, left=left, label=name, color=COLORS[i])
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.barh(y, client_extra, left=left, label="our transport stack", color=COLORS[4])
    left = [a + b for a, b in zip(left, client_extra, strict=True)]
    f0 = rungs["socket"]["p50"]
    for i, total in enumerate(left):
        ax.text(total, i, f"  {total:.0f} µs ({total / f0:.1f} × F0)", va="center", fontsize=8)
    ax.axvline(f0 * HOP_TARGET_F0, color="black", linestyle="--", linewidth=1)
    ax.text(
        f0 * HOP_TARGET_F0,
        len(labels) - 0.52,
        f" {HOP_TARGET_F0:g} × F0: the most a hop may add",
        fontsize=8,
        va="bottom",
    )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(left) * 1.45)
    ax.set_xlabel("µs, p50 round trip")
    ax.set_title(f"The ladder: F0 = {f0:.0f} µs, then what each layer adds")
    ax.legend(loc="lower right", fontsize=8)
