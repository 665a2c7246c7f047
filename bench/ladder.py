"""F0 and the ladder: what a hop costs from the bare loopback round trip up to our client.

Every rung answers on the server CPUs and is asked from this process (the load CPU) over one
keep-alive ``http.client`` connection, interleaved in shuffled blocks, so each step up the
ladder is a difference of medians taken at the same moments:

- ``socket``: F0, a minimal Python socket server answering a fixed response;
- ``<server>.wsgi`` / ``.flask`` / ``.falcon``: each server (one worker) with a bare WSGI
  function, with a bare Flask app (the gateway's framework), with a bare Falcon app;
- ``<server>.service``: the posts service's ``GET /ping`` under that server (its framework and
  its hooks: request ids, Server-Timing, the credential check's bookkeeping); which framework
  that is, ``service_framework`` reads off the service the composition root builds;
- ``transport``: our client's transport stack (``ResilientTransport`` over
  ``PooledHttpTransport``, as ``blog.wiring.connect`` builds it) sending ``GET /ping`` to the
  service under the configured server;
- ``client.get_post`` against ``stdlib.get_post``: the whole client (``connect("posts")``)
  against ``http.client`` sending the same request with the credential: what our client adds
  to a real call.

Each rung's server CPU per request: the CPU time of its server's processes (schedstat) over the
requests it answered while the rungs were sampled; the client's rungs ask a posts service of
their own, so every server serves one rung. Then both ends of a hop in CPU: this thread's and the
server's, over calls in a row, for F0 and each way of asking the service.

Then, apart (``colocated``), F0 and the configured server's service ``/ping`` once more with the
client on the server CPUs too: a gateway and its services on one CPU (part 4's post page) pay a
round trip whose two ends take turns on that CPU.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.sampling import interleaved, log, stats_us, warm
from blog.config import Config, ServerConfig
from blog.serving import ServerProcess
from blog.transport import WireRequest
from blog.transport.credentials import ServiceCredentials
from blog.wiring import build_service, connect
from lab import procstat
from lab.cpus import pinned
from lab.keepalive import KeepAlive
from lab.processes import FRAMEWORKS, SERVERS, floor_server, start_services

DOMAIN = "posts"


def _rung_servers(cpus: str | None) -> dict[str, ServerProcess]:
    servers = {"socket": floor_server("socket", cpus=cpus)}
    for server in SERVERS:
        for kind in ("wsgi", *FRAMEWORKS):
            servers[f"{server}.{kind}"] = floor_server(kind, server, cpus=cpus)
    return servers


def service_framework(config: Config) -> str:
    """The web framework under a service's WSGI callable (``flask`` or ``falcon``), from the app
    ``blog.wiring.build_service`` builds (building opens nothing)."""
    runtime = build_service(DOMAIN, config)
    try:
        inner = getattr(runtime.app, "wsgi_app", runtime.app)
        owner = getattr(inner, "__self__", inner)  # a Flask app's own wsgi_app is a method
        return type(owner).__module__.split(".")[0]
    finally:
        runtime.close()


def _client_cpu_rungs(server: str) -> tuple[str, ...]:
    """The rungs whose client end is measured: F0's, and each way of asking the service."""
    return ("socket", f"{server}.service", "transport", "stdlib.get_post", "client.get_post")


def _cpu_in_a_row(fn: Callable[[], Any], server: list[int], calls: int) -> dict[str, float]:
    """CPU µs per call of ``fn`` over ``calls`` calls in a row, at both ends: this thread's
    (kernel time included; on loopback the sender's system call also runs the receiver's TCP
    work) and the ``server`` processes'."""
    client, serving = time.thread_time_ns(), procstat.cpu_ns(server)
    for _ in range(calls):
        fn()
    return {
        "client": (time.thread_time_ns() - client) / 1000 / calls,
        "server": (procstat.cpu_ns(server) - serving) / 1000 / calls,
    }


def _ping(client: KeepAlive) -> None:
    status, _ = client.request("GET", "/ping")
    assert status == 200, status


def measure_ladder(
    base: Config,
    state: Path,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    rounds: int,
    block: int,
) -> dict[str, Any]:
    with ExitStack() as stack:
        log("ladder: F0's socket server, 3 servers × (WSGI, Flask, Falcon), 4 posts services")
        floors = _rung_servers(server_cpus_spec)
        for server in floors.values():
            stack.callback(server.kill)
        with ThreadPoolExecutor(max_workers=len(floors)) as pool:
            list(pool.map(lambda server: server.start(), floors.values()))
        services = {
            name: start_services(
                [DOMAIN],
                base,
                state / name,
                stack,
                cpus=server_cpus,
                server=ServerConfig(name=name, workers=1, threads=base.server.threads),
            )[DOMAIN]
            for name in SERVERS
        }
        processes: dict[str, ServerProcess] = {
            **floors,
            **{f"{name}.service": service for name, service in services.items()},
        }
        clients = {rung: KeepAlive(server.port) for rung, server in processes.items()}
        for keepalive in clients.values():
            stack.callback(keepalive.close)

        # Our client's rungs ask an instance of their own, so that each rung's server CPU per
        # request is its own rung's (every other rung has its server to itself).
        configured = start_services(
            [DOMAIN],
            base,
            state / "client",
            stack,
            cpus=server_cpus,
            server=ServerConfig(name=base.server.name, workers=1, threads=base.server.threads),
        )[DOMAIN]
        client = connect(DOMAIN, base, configured.url)
        stack.callback(client.transport.close)
        transport = client.transport
        post = client.create_post(1, "Ladder", "A ladder post", "Lorem ipsum. " * 40)
        credential = ServiceCredentials(base.transport.internal_token).token_for(DOMAIN)
        stdlib = KeepAlive(configured.port)
        stack.callback(stdlib.close)
        auth_header = {"Authorization": f"Bearer {credential}"}
        ping = WireRequest("GET", "/ping", f"{DOMAIN}.ping", True)

        def via_transport() -> None:
            assert transport.send(ping).status == 200

        def via_stdlib() -> None:
            status, _ = stdlib.request("GET", f"/posts/{post.id}", None, auth_header)
            assert status == 200, status

        variants: dict[str, Callable[[], Any]] = {
            rung: functools.partial(_ping, keepalive) for rung, keepalive in clients.items()
        }
        variants["transport"] = via_transport
        variants["client.get_post"] = functools.partial(client.get_post, post.id)
        variants["stdlib.get_post"] = via_stdlib
        warm(variants)
        log(f"ladder: {len(variants)} rungs, interleaved")
        trees = {rung: procstat.process_tree(server.pid or 0) for rung, server in processes.items()}
        before = {rung: procstat.cpu_ns(pids) for rung, pids in trees.items()}
        samples = interleaved(variants, rounds=rounds, block=block)
        cpu = {
            rung: (procstat.cpu_ns(pids) - before[rung]) / 1000 / len(samples[rung])
            for rung, pids in trees.items()
        }
        client_tree = procstat.process_tree(configured.pid or 0)
        in_a_row = {
            rung: _cpu_in_a_row(
                variants[rung], trees.get(rung, client_tree), calls=max(rounds * block // 2, 10)
            )
            for rung in _client_cpu_rungs(base.server.name)
        }
        colocated = {
            "socket": variants["socket"],
            "service": variants[f"{base.server.name}.service"],
        }
        with pinned(server_cpus):
            log("ladder: F0 and the service's /ping with the client on the server CPUs")
            warm(colocated)
            together = interleaved(colocated, rounds=max(rounds // 2, 1), block=block)
        placement = {
            rung: procstat.cpus_allowed(server.pid)
            for rung, server in processes.items()
            if server.pid is not None
        }
        return {
            "rungs": {rung: stats_us(s) for rung, s in samples.items()},
            "server_cpu_us_per_request": cpu,
            "in_a_row_cpu_us_per_request": in_a_row,
            "colocated": {rung: stats_us(s) for rung, s in together.items()},
            "servers": list(SERVERS),
            "frameworks": list(FRAMEWORKS),
            "service_framework": service_framework(base),
            "configured_server": base.server.name,
            "transport_stack": f"{type(transport).__name__} over "
            f"{type(getattr(transport, 'inner', transport)).__name__}",
            "placement": placement,
        }
