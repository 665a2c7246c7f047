"""One link, taken apart: what a call costs directly between two hosts, through the delay proxy
at 0 ms, and through it at an RTT; on a kept-alive connection and on a new one per call.

    python -m lab.linkprobe [RTT_MS]       # measure, print the numbers (root)
    python -m lab.linkprobe serve PORT     # the probe's server (run inside the server host)

Two hosts on a bridge (a client and a server, built by ``blog.hosts.lab``), the server running
F0's fixed-answer HTTP server (``lab.floor_servers``' answer, on every address of its host), and
one relay process in the server's host with two routes to it: at 0 ms and at the RTT asked. The
client (a thread of this process, inside the client host) takes the three paths in interleaved
blocks, so drift on a shared machine falls on all of them alike; client and server run under the
real-time scheduler (lowest priority) and the CPUs' wake-up latency is held at 0
(``lab.wakeups``), so other work on the machine does not pass for network time.

What it answers: the proxy's own cost (the 0 ms path minus the direct one: what the proxy adds
beyond the delay asked, a user-space hop each way) and how exact the delay is (the RTT path
minus the 0 ms path, against the RTT). The hosts test asserts both; the network bench reports
them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from blog.config import NetworkConfig
from blog.hosts.lab import HostsLab
from blog.hosts.plan import Host, Plan, namespace_name
from lab.floor_servers import RESPONSE
from lab.stats import percentile
from lab.wakeups import quick_wakeups

REQUEST = b"GET /ping HTTP/1.1\r\nHost: probe\r\n\r\n"

PORT = 7070
ZERO_PORT = 7071
DELAYED_PORT = 7072


@contextlib.contextmanager
def real_time() -> Iterator[None]:
    """This thread (and the threads it starts) under the real-time scheduler's lowest priority
    for the block: the probe's ends wait for the network, not for a CPU that other work on the
    machine holds. Without the privilege, nothing changes."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def serve(port: int) -> None:
    """F0's server, on every address of its host: one thread per connection, a fixed answer."""
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    with socket.create_server(("0.0.0.0", port), backlog=64) as server:
        print("ready", flush=True)
        while True:
            client, _ = server.accept()
            threading.Thread(target=_answer, args=(client,), daemon=True).start()


def _answer(client: socket.socket) -> None:
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with client:
        while True:
            if not client.recv(65536):
                return
            client.sendall(RESPONSE)


def probe_plan(lab: str, rtt_ms: float) -> Plan:
    client = Host("client", "monolith", namespace_name(lab, "client"), "198.18.0.2", 0)
    server = Host(
        "server",
        "service",
        namespace_name(lab, "server"),
        "198.18.0.10",
        PORT,
        None,
        NetworkConfig(rtt_ms=rtt_ms),
    )
    return Plan(lab, [client, server], [], 0, {})


class RawClient:
    """F0's client: the request's bytes on one connection and the fixed answer's bytes back, no
    parsing. ``http.client`` costs tens of microseconds more per call, more still when the call
    follows a wait (its code runs on cold caches), and that is not the link's cost."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.sock: socket.socket | None = None

    def call(self, new_connection: bool = False) -> None:
        if new_connection:
            self.close()
        if self.sock is None:
            self.sock = socket.create_connection((self.address, self.port), timeout=10)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(REQUEST)
        answer = b""
        while len(answer) < len(RESPONSE):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the probe server closed the connection")
            answer += chunk
        if answer != RESPONSE:
            raise AssertionError(f"unexpected answer: {answer[:80]!r}")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def measure_link(
    rtt_ms: float = 5.0,
    *,
    samples: int = 200,
    block: int = 20,
    new_connection_samples: int = 30,
    gap_ms: float | None = None,
    state_dir: Path | None = None,
) -> dict[str, Any]:
    """Build the two hosts, measure, remove them (always). Times in µs.

    ``paced``: each call after an idle gap (``gap_ms``, default the RTT, at least 2 ms), on a
    kept-alive connection: every path's call then starts as cold as a call across the RTT does
    (client, proxy and server all waited), so the paths differ by the link alone. ``hot``: calls
    back to back, the proxy's cost at its cheapest. ``new_connection``: paced, a connection per
    call (the handshake's extra round trip)."""
    gap = max(rtt_ms, 2.0) / 1000 if gap_ms is None else gap_ms / 1000
    lab_name = f"p{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="linkprobe-")))
        lab = HostsLab(state_dir)
        plan = probe_plan(lab_name, rtt_ms)
        _client, server = plan.hosts
        lab.create(plan)
        stack.callback(lab.down)
        log = lab.log_path("probe-server")
        lab.spawn(
            "probe-server",
            [sys.executable, "-m", "lab.linkprobe", "serve", str(PORT)],
            server.namespace,
            log,
        )
        routes = [
            {
                "name": name,
                "listen": {"host": server.address, "port": port},
                "connect": {"host": "127.0.0.1", "port": PORT},
                "rtt_ms": rtt,
            }
            for name, port, rtt in (("zero", ZERO_PORT, 0.0), ("delayed", DELAYED_PORT, rtt_ms))
        ]
        lab.start_relay(
            "probe-proxy", {"name": "probe-proxy", "routes": routes}, server.namespace, "server"
        )
        _wait_for(log, "ready")
        delayed = f"proxy at {rtt_ms:g} ms"
        paths = {"direct": PORT, "proxy at 0 ms": ZERO_PORT, delayed: DELAYED_PORT}
        with quick_wakeups() as quick, lab.inside("client"), real_time():
            clients = {name: RawClient(server.address, port) for name, port in paths.items()}
            try:
                paced = _interleaved(clients, samples, block, gap=gap, new=False)
                hot = _interleaved(clients, samples, block, gap=0.0, new=False)
                fresh = _interleaved(clients, new_connection_samples, 5, gap=gap, new=True)
            finally:
                for client in clients.values():
                    client.close()
    result: dict[str, Any] = {"rtt_ms": rtt_ms, "gap_ms": gap * 1000, "quick_wakeups": quick}
    for name, samples_of in (("paced", paced), ("hot", hot), ("new_connection", fresh)):
        result[name] = {path: _stats(values) for path, values in samples_of.items()}
    p50 = {path: stats["p50"] for path, stats in result["paced"].items()}
    result["proxy_cost_us"] = p50["proxy at 0 ms"] - p50["direct"]
    result["proxy_cost_hot_us"] = (
        result["hot"]["proxy at 0 ms"]["p50"] - result["hot"]["direct"]["p50"]
    )
    result["added_us"] = p50[delayed] - p50["proxy at 0 ms"]
    result["excess_us"] = result["added_us"] - rtt_ms * 1000
    fresh_p50 = {path: stats["p50"] for path, stats in result["new_connection"].items()}
    result["new_connection_added_us"] = fresh_p50[delayed] - fresh_p50["proxy at 0 ms"]
    return result


def _interleaved(
    clients: dict[str, RawClient], samples: int, block: int, *, gap: float, new: bool
) -> dict[str, list[float]]:
    """Per-call µs on each path, in blocks taken in turn (drift falls on every path alike)."""
    out: dict[str, list[float]] = {name: [] for name in clients}
    for client in clients.values():
        client.call()  # connect and warm each path
    for _ in range(max(1, samples // block)):
        for name, client in clients.items():
            for _ in range(block):
                if gap:
                    time.sleep(gap)
                started = time.perf_counter_ns()
                client.call(new_connection=new)
                out[name].append((time.perf_counter_ns() - started) / 1000)
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(values),
        "p90": percentile(values, 90),
        "min": min(values),
        "n": len(values),
    }


def _wait_for(log: Path, word: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and word in log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the probe server did not start:\n{log.read_text(errors='replace')}"
            )
        time.sleep(0.02)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    else:
        import json

        rtt = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
        print(json.dumps(measure_link(rtt), indent=2))
