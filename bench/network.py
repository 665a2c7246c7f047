"""The lab across the network: everything extracted, each process on a host of its own, and the
public API's post page, create post and upload measured as the round-trip time between the
monolith and the services grows (``blog.hosts``; root only).

    .venv/bin/python bench/network.py [--quick] [--out reports] [--rtts 0,0.5,2,10]

Writes ``network.md``, ``network.png`` and ``network.json`` to ``--out``. For ``make
bench-matrix``: :func:`measure_network` returns the results as a dict, :func:`render_markdown`
turns them into the report's section, :func:`chart` draws them on a matplotlib axis (and
:func:`draw_chart` into a file of their own).

What is measured, from a client inside the monolith's host (so the client's own link is free):

- each request at each RTT, through the monolith as ``make serve`` runs it (keep-alive to the
  services on), and through a second monolith beside it whose transport opens a connection per
  call (``transport.keep_alive: false``): a new connection pays the TCP handshake, one more RTT;
- the gateway's critical path: every one of the three requests makes two calls in a row (the
  post page: posts, then auth for the author; create post: auth.verify, then posts.create_post;
  upload: auth.verify, then images.upload), so the expected cost is the request at 0 ms plus
  2 × RTT (2 × 2 × RTT without keep-alive);
- fan-out: two independent calls (``auth.get_user`` and ``posts.list_comments``) made from the
  monolith's host one after the other, then concurrently: RTT × 2 against RTT × 1;
- the delay proxy's own cost at 0 ms, and how exactly it delays (``lab.linkprobe``).

Loops are bounded in count; every host, process and link is removed at the end, failed or not.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.topologies import seed_http  # noqa: E402
from blog.config import Config, ServerConfig, load_config  # noqa: E402
from blog.domains import HTTP_SERVICES  # noqa: E402
from blog.hosts.lab import HostsLab  # noqa: E402
from blog.hosts.netns import require_root  # noqa: E402
from blog.hosts.plan import plan_hosts  # noqa: E402
from blog.serving import free_port  # noqa: E402
from blog.wiring import build_monolith  # noqa: E402
from lab.configs import cost_settings  # noqa: E402
from lab.keepalive import KeepAlive  # noqa: E402
from lab.linkprobe import measure_link  # noqa: E402
from lab.payloads import jpeg_1mp, multipart_image  # noqa: E402
from lab.server_timing import summarize_server_timing  # noqa: E402
from lab.stats import percentile  # noqa: E402
from lab.wakeups import quick_wakeups  # noqa: E402

RTTS_MS: tuple[float, ...] = (0.0, 0.5, 2.0, 10.0)
HOPS = {"post page": 2, "create post": 2, "upload": 2}
"""Calls in a row on each request's critical path (see the module's docstring)."""
CALLS = {
    "post page": "posts.get_post_with_comments → auth.get_user",
    "create post": "auth.verify → posts.create_post",
    "upload": "auth.verify → images.upload",
}
VARIANTS = {"keep-alive": "monolith", "new connection per call": "monolith-no-keepalive"}
LAB_NAME = "bench"


class HostClient(KeepAlive):
    """The lab's keep-alive client, to a host's address instead of loopback."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(port)
        self.connection = _NoDelay(address, port, timeout=60)

    def timed(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[float, str]:
        """(ms, Server-Timing) of one request, which must succeed."""
        started = time.perf_counter_ns()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        elapsed = (time.perf_counter_ns() - started) / 1e6
        if response.status >= 300:
            raise AssertionError(f"{method} {path}: {response.status} {data[:300]!r}")
        return elapsed, response.getheader("Server-Timing", "")


class _NoDelay(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def lab_config(base: Config, state: Path, server: ServerConfig) -> dict[str, Any]:
    """Every HTTP domain extracted, with the user's cost settings and throw-away state; events
    inline, the fake payment provider, no rate limits (the bench writes hundreds of posts)."""
    settings = cost_settings(base)
    settings["images"] = {**settings["images"], "local_dir": str(state / "images")}
    settings["server"] = {"name": server.name, "workers": server.workers, "threads": server.threads}
    return {
        **settings,
        "env": "testing",
        "database_url": f"sqlite:///{state / 'blog.db'}",
        "payments": {"provider": "fake", "stripe_api_base": None},
        "email": {"transport": "inbox"},
        "events": {"broker": "inline"},
        "rate_limits": {"enabled": False},
        "discovery": {"kind": "static"},
        "services": {
            domain: {
                "mode": "http",
                "database_url": f"sqlite:///{state / f'{domain}-service.db'}",
            }
            for domain in HTTP_SERVICES
        },
    }


def measure_network(
    base: Config | None = None,
    *,
    rtts: Sequence[float] = RTTS_MS,
    samples: int = 40,
    block: int = 5,
    quick: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the hosts, measure, remove them; the results as a dict (see the docstring)."""
    require_root()
    base = base or load_config()
    if quick:
        samples, block = 10, 5
    server = ServerConfig(name=base.server.name, workers=1, threads=base.server.threads)
    results: dict[str, Any] = {
        "machine": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": os.getloadavg()[0],
        },
        "server": {"name": server.name, "workers": server.workers, "threads": server.threads},
        "samples": samples,
        "rtts_ms": list(rtts),
        "hops": HOPS,
        "calls": CALLS,
    }
    log("network: the delay proxy's own cost (two hosts, a fixed-answer server)")
    results["proxy"] = _proxy(quick)
    with ExitStack() as stack:
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-network-")))
        source = state / "source.yaml"
        source.write_text(yaml.safe_dump(lab_config(base, state / "data", server)))
        config = load_config(source)
        plan = plan_hosts(config, lab=LAB_NAME, expose_port=free_port())
        lab = HostsLab(state / "lab", say=lambda line: log(f"  {line}"))
        log("network: hosts up (the monolith and four services, each on a host of its own)")
        lab.up(plan, workers=1)
        stack.callback(lab.down)
        no_keepalive = state / "lab" / "config-no-keepalive.yaml"
        no_keepalive.write_text(
            yaml.safe_dump(
                {**plan.config, "transport": {**plan.config["transport"], "keep_alive": False}}
            )
        )
        monolith = plan.monolith
        second_port = monolith.port + 1
        lab.start_monolith(
            monolith,
            no_keepalive,
            server=server,
            name=VARIANTS["new connection per call"],
            port=second_port,
        )
        ports = {variant: monolith.port for variant in VARIANTS}
        ports["new connection per call"] = second_port
        stack.enter_context(quick_wakeups())
        with lab.inside("monolith"):
            clients = {
                variant: HostClient(monolith.address, port) for variant, port in ports.items()
            }
            stack.callback(lambda: [client.close() for client in clients.values()])
            seed = seed_http(clients["keep-alive"], prefix="network")
            seed["user_id"] = clients["keep-alive"].json("GET", "/api/me", headers=seed["headers"])[
                "id"
            ]
            results["requests"] = _requests(lab, clients, seed, rtts, samples, block, log)
            results["fan_out"] = _fan_out(lab, Path(lab.state["config"]), seed, rtts, samples, log)
    results["machine"]["load_after"] = os.getloadavg()[0]
    results["critical_path"] = critical_path(results)
    return results


def _proxy(quick: bool) -> dict[str, Any]:
    probe = measure_link(
        2.0, samples=60 if quick else 200, new_connection_samples=10 if quick else 30
    )
    return {
        "rtt_ms": probe["rtt_ms"],
        "cost_us": probe["proxy_cost_us"],
        "cost_hot_us": probe["proxy_cost_hot_us"],
        "added_us": probe["added_us"],
        "excess_us": probe["excess_us"],
        "new_connection_added_us": probe["new_connection_added_us"],
        "paced": probe["paced"],
        "hot": probe["hot"],
        "new_connection": probe["new_connection"],
        "gap_ms": probe["gap_ms"],
    }


def _requests(
    lab: HostsLab,
    clients: dict[str, HostClient],
    seed: dict[str, Any],
    rtts: Sequence[float],
    samples: int,
    block: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Per RTT, per request, per variant: ms percentiles and the Server-Timing summary."""
    headers = seed["headers"]
    body, content_type = multipart_image(jpeg_1mp())
    requests: dict[str, Callable[[HostClient], tuple[float, str]]] = {
        "post page": lambda c: c.timed("GET", f"/api/posts/{seed['detail']}", None, {}),
        "create post": lambda c: c.timed(
            "POST",
            "/api/posts",
            json.dumps({"title": "Over the network", "body": "Lorem ipsum. " * 40}).encode(),
            {**headers, "Content-Type": "application/json"},
        ),
        "upload": lambda c: c.timed(
            "POST", "/api/upload", body, {**headers, "Content-Type": content_type}
        ),
    }
    times: dict[str, dict[str, dict[str, list[float]]]] = {
        f"{r:g}": {n: {v: [] for v in clients} for n in requests} for r in rtts
    }
    timings: dict[str, dict[str, dict[str, list[str]]]] = {
        f"{r:g}": {n: {v: [] for v in clients} for n in requests} for r in rtts
    }
    rounds = max(1, samples // block)
    for round_number in range(rounds):  # every RTT in every round: drift falls on all alike
        for rtt in rtts:
            lab.set_links({"rtt_ms": rtt, "jitter_ms": 0.0})
            for name, call in requests.items():
                for variant, client in clients.items():
                    call(client)  # one unmeasured call: the first after a change
                    for _ in range(block):
                        ms, timing = call(client)
                        times[f"{rtt:g}"][name][variant].append(ms)
                        timings[f"{rtt:g}"][name][variant].append(timing)
        log(f"network: round {round_number + 1}/{rounds} done")
    return {
        key: {
            name: {
                variant: {
                    **_stats(values),
                    "server_timing": summarize_server_timing(timings[key][name][variant]),
                }
                for variant, values in per_variant.items()
            }
            for name, per_variant in per_request.items()
        }
        for key, per_request in times.items()
    }


def _fan_out(
    lab: HostsLab,
    config_path: Path,
    seed: dict[str, Any],
    rtts: Sequence[float],
    samples: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Two independent calls from the monolith's host, one after the other and at once."""
    config = load_config(config_path)
    runtime = build_monolith(config)
    domains = runtime.registry
    out: dict[str, Any] = {}
    try:
        user_id, post_id = seed["user_id"], seed["detail"]

        def first() -> Any:
            return domains.auth.get_user(user_id)

        def second() -> Any:
            return domains.posts.list_comments(post_id)

        with ThreadPoolExecutor(max_workers=2) as pool:  # born in this host: its threads too

            def sequential() -> None:
                first()
                second()

            def concurrent() -> None:
                a, b = pool.submit(first), pool.submit(second)
                a.result()
                b.result()

            variants = {"sequential": sequential, "concurrent": concurrent}
            for fn in variants.values():
                for _ in range(5):
                    fn()
            times: dict[str, dict[str, list[float]]] = {
                f"{r:g}": {v: [] for v in variants} for r in rtts
            }
            for _ in range(max(1, samples // 5)):
                for rtt in rtts:
                    lab.set_links({"rtt_ms": rtt, "jitter_ms": 0.0})
                    for name, fn in variants.items():
                        fn()
                        for _ in range(5):
                            started = time.perf_counter_ns()
                            fn()
                            times[f"{rtt:g}"][name].append((time.perf_counter_ns() - started) / 1e6)
            log("network: fan-out measured")
            for key, per_variant in times.items():
                out[key] = {name: _stats(values) for name, values in per_variant.items()}
    finally:
        runtime.close()
    return out


def _stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p90": percentile(values, 90),
        "min": min(values),
        "n": len(values),
    }


def critical_path(results: dict[str, Any]) -> dict[str, Any]:
    """Measured against the model: the request at 0 ms + hops × RTT (× 2 without keep-alive:
    each call's handshake is one more round trip)."""
    requests = results["requests"]
    base_key = f"{min(results['rtts_ms']):g}"
    out: dict[str, Any] = {}
    for name, hops in HOPS.items():
        rows = []
        for rtt in results["rtts_ms"]:
            key = f"{rtt:g}"
            row: dict[str, Any] = {"rtt_ms": rtt}
            for variant in VARIANTS:
                base = requests[base_key][name][variant]["p50"]
                trips = hops * (1 if variant == "keep-alive" else 2)
                expected = base + trips * rtt
                measured = requests[key][name][variant]["p50"]
                row[variant] = {
                    "measured_ms": measured,
                    "expected_ms": expected,
                    "round_trips": trips,
                    "excess_ms": measured - expected,
                }
            rows.append(row)
        out[name] = rows
    return out


# --------------------------------------------------------------------------- report


def render_markdown(results: dict[str, Any], chart_file: str | None = "network.png") -> str:
    """The report's section: the tables, the proxy's cost, and what they say."""
    rtts = results["rtts_ms"]
    proxy = results["proxy"]
    lines = [
        "## Across the network: hosts with real distance (`bench/network.py`)",
        "",
        f"Every HTTP domain extracted, each process on a host (network namespace) of its own, "
        f"a delay proxy in front of each service host; {results['samples']} requests per cell, "
        f"medians in ms, from a client inside the monolith's host. {results['server']['name']}, "
        f"one worker per server. Load average {results['machine']['load_before']:.1f} before, "
        f"{results['machine']['load_after']:.1f} after ({results['machine']['date']}).",
        "",
        "Each request makes two calls in a row ("
        + "; ".join(f"{name}: {calls}" for name, calls in CALLS.items())
        + "), so the model is *the request at 0 ms + 2 × RTT* with keep-alive, "
        "*+ 4 × RTT* with a new connection per call (the handshake is one more round trip).",
        "",
        "| request | transport | " + " | ".join(f"RTT {r:g} ms" for r in rtts) + " |",
        "|---|---|" + "---:|" * len(rtts),
    ]
    for name in HOPS:
        for variant in VARIANTS:
            cells = []
            for row in results["critical_path"][name]:
                cell = row[variant]
                cells.append(f"{cell['measured_ms']:.1f} (model {cell['expected_ms']:.1f})")
            lines.append(f"| {name} | {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "What keep-alive buys, per request (new connection per call minus keep-alive, ms): "
        + "; ".join(
            f"RTT {r:g}: " + ", ".join(f"{name} {_saving(results, name, r):.1f}" for name in HOPS)
            for r in rtts
        )
        + ".",
        "",
        "Fan-out: `auth.get_user` and `posts.list_comments` (independent) from the monolith's "
        "host, one after the other against both at once (ms):",
        "",
        "| | " + " | ".join(f"RTT {r:g} ms" for r in rtts) + " |",
        "|---|" + "---:|" * len(rtts),
    ]
    for variant in ("sequential", "concurrent"):
        cells = [f"{results['fan_out'][f'{r:g}'][variant]['p50']:.2f}" for r in rtts]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"The delay proxy's own cost, at 0 ms (a fixed-answer server, two hosts, "
        f"`lab/linkprobe.py`): **{proxy['cost_us']:.0f} µs** per round trip for a call that "
        f"follows a {proxy['gap_ms']:.0f} ms pause, {proxy['cost_hot_us']:.0f} µs back to back; "
        f"at {proxy['rtt_ms']:g} ms it added {proxy['added_us']:.0f} µs "
        f"({proxy['excess_us']:+.0f} µs beyond the RTT asked), and a new connection "
        f"{proxy['new_connection_added_us'] / 1000:.2f} ms (two round trips).",
    ]
    if chart_file:
        lines += ["", f"![latency against RTT]({chart_file})"]
    return "\n".join(lines) + "\n"


def _saving(results: dict[str, Any], name: str, rtt: float) -> float:
    cell = results["requests"][f"{rtt:g}"][name]
    return float(cell["new connection per call"]["p50"] - cell["keep-alive"]["p50"])


COLOURS = {"post page": "tab:blue", "create post": "tab:orange", "upload": "tab:green"}
STYLES = {"keep-alive": "-", "new connection per call": "--"}


def chart(ax: Any, results: dict[str, Any]) -> None:
    """What the distance adds, on ``ax``: each request's median minus its own at RTT 0, with
    keep-alive (solid) and a new connection per call (dashed), against the critical path's
    model (dotted: 2 × RTT, and 4 × RTT when every call pays a handshake)."""
    rtts = results["rtts_ms"]
    for name, colour in COLOURS.items():
        rows = results["critical_path"][name]
        for variant, style in STYLES.items():
            base = rows[0][variant]["measured_ms"]
            added = [row[variant]["measured_ms"] - base for row in rows]
            ax.plot(rtts, added, style, marker="o", color=colour, label=f"{name}, {variant}")
    for variant, model_style in (("keep-alive", ":"), ("new connection per call", "-.")):
        trips = HOPS["post page"] * (1 if variant == "keep-alive" else 2)
        label = f"model: {trips} × RTT"
        ax.plot(rtts, [trips * r for r in rtts], model_style, color="black", alpha=0.6, label=label)
    ax.set_xlabel("RTT between the monolith and each service (ms)")
    ax.set_ylabel("added to the request's median at RTT 0 (ms)")
    ax.set_title("Across hosts: a request pays RTT × its calls in a row (× 2 without keep-alive)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def chart_absolute(ax: Any, results: dict[str, Any]) -> None:
    """The medians themselves (ms), each request with both transports."""
    rtts = results["rtts_ms"]
    for name, colour in COLOURS.items():
        rows = results["critical_path"][name]
        for variant, style in STYLES.items():
            measured = [row[variant]["measured_ms"] for row in rows]
            ax.plot(rtts, measured, style, marker="o", color=colour, label=f"{name}, {variant}")
    ax.set_xlabel("RTT (ms)")
    ax.set_ylabel("request latency, median (ms)")
    ax.set_title("The requests' medians")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def draw_chart(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart drawn")
        return None
    fig, (added, absolute) = plt.subplots(1, 2, figsize=(15, 6))
    chart(added, results)
    chart_absolute(absolute, results)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--quick", action="store_true", help="10 requests per cell")
    parser.add_argument("--rtts", default=",".join(f"{r:g}" for r in RTTS_MS))
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args(argv)
    rtts = [float(r) for r in args.rtts.split(",")]
    results = measure_network(rtts=rtts, samples=args.samples, quick=args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "network.json").write_text(json.dumps(results, indent=2))
    drawn = draw_chart(results, args.out / "network.png")
    markdown = render_markdown(results, "network.png" if drawn else None)
    (args.out / "network.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
