"""The latency matrix: every topology, the floors, the cost per request and fault isolation.

    make bench-matrix            # or: .venv/bin/python bench/matrix.py [--quick]

Writes ``reports/latency.md``, ``reports/latency.png`` and ``reports/latency.json`` (the numbers
behind both). About five minutes on a 2-CPU machine; ``--quick`` is a short dry run of every part.

Parts, in order:

1. Floors: a direct method call, the same call through ``TimedDomain`` (the in-process
   interface), ``auth.get_user`` both ways, bcrypt at the configured cost, and a bare keep-alive
   ``http.client`` round trip to ``GET /ping`` on each extracted service's gunicorn stack. Then
   each extracted hop (``auth.get_user``, ``auth.verify``, ``posts.get_post``, ...) in-process
   and over HTTP, split into: the floor, the service's work beyond it, the client's transport
   stack (``ResilientTransport`` over ``PooledHttpTransport``, as the composition root builds
   it) and the domain client's encoding and decoding.
2. The latency suite (``tests/latency``, pytest-benchmark) once per topology.
3. Cost: the monolith served by gunicorn (2 gthread workers) and driven by a keep-alive
   ``http.client`` loop; CPU per request summed over the monolith and every extracted service
   process, from /proc, and their memory.
4. Fault isolation: ``GET /api/posts`` latency, quiet and during a bounded burst of concurrent
   1-megapixel uploads, with images in-process and extracted.

Placement: this process (the load generator, and the in-process monolith of parts 1 and 2) runs
on ``--load-cpus`` (CPU 0); every server (extracted services, the gunicorn monolith) on
``--server-cpus`` (CPU 1), set with ``taskset`` and checked in /proc afterwards. Loopback only;
every loop is bounded.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from time import perf_counter_ns
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bcrypt  # noqa: E402

from blog.config import Config  # noqa: E402
from blog.db import make_engine, make_session_factory  # noqa: E402
from blog.domains import HTTP_SERVICES, manifest  # noqa: E402
from blog.events import InlineEventBus  # noqa: E402
from blog.manifest import BuildContext  # noqa: E402
from blog.serving import ServerProcess  # noqa: E402
from blog.timing import TimedDomain, calls_var  # noqa: E402
from blog.transport import Transport, WireRequest  # noqa: E402
from blog.transport.credentials import ServiceCredentials  # noqa: E402
from blog.transport.http import PooledHttpTransport  # noqa: E402
from blog.transport.resilience import CircuitBreaker, ResilientTransport  # noqa: E402
from blog.wiring import Domains, Monolith, build_monolith  # noqa: E402
from lab import procstat  # noqa: E402
from lab.configs import base_config, lab_config  # noqa: E402
from lab.cpus import SERVER_CPUS_ENV, parse_cpus, pinned  # noqa: E402
from lab.keepalive import KeepAlive  # noqa: E402
from lab.payloads import JPEG_SIZE, jpeg_1mp, multipart_image  # noqa: E402
from lab.processes import FLOOR_KINDS, floor_server, start_monolith, start_services  # noqa: E402
from lab.stats import percentile  # noqa: E402
from lab.topology import MATRIX, TOPOLOGY_ENV, Topology, parse_topology  # noqa: E402

REPORTS = ROOT / "reports"
BIN = Path(sys.executable).parent
PASSWORD = "correct horse battery"
CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


@dataclass(frozen=True)
class Plan:
    """How much of everything: sized so the full matrix stays near five minutes on 2 CPUs."""

    probe_blocks: int = 300  # × 1000 calls: direct vs TimedDomain no-op
    call_samples: int = 2000  # in-process get_user, direct vs TimedDomain
    hop_rounds: int = 50  # × hop_block calls of each variant of each hop, interleaved
    hop_block: int = 6
    bcrypt_hashes: int = 3
    suite_max_time: float = 0.8  # pytest-benchmark --benchmark-max-time per scenario
    cost_requests: int = 150  # per scenario (uploads: cost_uploads)
    cost_uploads: int = 20
    cost_warmup: int = 15
    idle_seconds: float = 1.5
    quiet_requests: int = 300
    burst_threads: int = 4
    burst_uploads: int = 6  # per thread
    burst_probe_cap: int = 20000

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            probe_blocks=30,
            call_samples=200,
            hop_rounds=2,
            hop_block=10,
            bcrypt_hashes=1,
            suite_max_time=0.05,
            cost_requests=10,
            cost_uploads=2,
            cost_warmup=2,
            idle_seconds=0.2,
            quiet_requests=30,
            burst_threads=2,
            burst_uploads=2,
        )


def stats_us(samples_ns: Sequence[float]) -> dict[str, float]:
    us = [s / 1000 for s in samples_ns]
    return {
        "p50": percentile(us, 50),
        "p95": percentile(us, 95),
        "p99": percentile(us, 99),
        "min": min(us),
        "n": len(us),
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# =========================================================================== 1. floors


class _Probe:
    def call(self, value: int) -> int:
        return value


def _loop_ns(fn: Callable[[int], Any], loops: int = 1000) -> float:
    started = perf_counter_ns()
    for _ in range(loops):
        fn(1)
    return (perf_counter_ns() - started) / loops


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    rounds: int,
    block: int,
) -> dict[str, list[float]]:
    """Per-call nanoseconds of each variant, in blocks taken in a shuffled order every round, so
    drift on a shared machine spreads over all variants alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(7)
    calls = calls_var.get()
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            fn, out = variants[name], samples[name]
            for _ in range(block):
                started = perf_counter_ns()
                fn()
                out.append(perf_counter_ns() - started)
        if calls is not None:
            calls.clear()  # TimedDomain's per-request record; a request would start a new one
    return samples


def _seed_domains(domains: Domains, jpeg: bytes) -> dict[str, Any]:
    email = f"floor-{uuid.uuid4().hex[:10]}@example.com"
    user = domains.auth.register(email, "Floor Reader", PASSWORD)
    token = domains.auth.login(email, PASSWORD).access_token
    post = domains.posts.create_post(user.id, user.name, "A floor post", "Lorem ipsum. " * 40)
    for n in range(5):
        domains.posts.add_comment(post.id, user.id, user.name, f"comment {n}")
    image = domains.images.upload(jpeg, filename="floor.jpg")
    payment = domains.payments.charge(user.id, 1999, "usd", "pm_card_visa", uuid.uuid4().hex)
    return {
        "user_id": user.id,
        "token": token,
        "post_id": post.id,
        "image_key": image.key,
        "payment_id": payment.id,
    }


# name, domain, interface call, wire request (method, path, json body, authenticated)
HOPS: list[
    tuple[
        str,
        str,
        Callable[[Domains, dict[str, Any]], Any],
        Callable[[dict[str, Any]], tuple[str, str, Any, bool]],
    ]
] = [
    (
        "auth.get_user",
        "auth",
        lambda d, f: d.auth.get_user(f["user_id"]),
        lambda f: ("GET", f"/users/{f['user_id']}", None, True),
    ),
    (
        "auth.verify",
        "auth",
        lambda d, f: d.auth.verify(f["token"]),
        lambda f: ("POST", "/verify", {"token": f["token"]}, True),
    ),
    (
        "posts.get_post",
        "posts",
        lambda d, f: d.posts.get_post(f["post_id"]),
        lambda f: ("GET", f"/posts/{f['post_id']}", None, True),
    ),
    (
        "posts.list_comments",
        "posts",
        lambda d, f: d.posts.list_comments(f["post_id"]),
        lambda f: ("GET", f"/comments?post={f['post_id']}", None, True),
    ),
    (
        "images.get",
        "images",
        lambda d, f: d.images.get(f["image_key"]),
        lambda f: ("GET", f"/images/{f['image_key']}", None, False),
    ),
    (
        "payments.get_payment",
        "payments",
        lambda d, f: d.payments.get_payment(f["payment_id"]),
        lambda f: ("GET", f"/payments/{f['payment_id']}", None, True),
    ),
]


def python_calls(fn: Callable[[], Any], calls: int = 50) -> float:
    """Python function calls per call of ``fn`` (cProfile's count): a measure of work that no
    neighbour on a shared machine can disturb."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        fn()
    profile.disable()
    stats: Any = pstats.Stats(profile)  # total_calls is there, but not in typeshed
    return float(stats.total_calls) / calls


def _floor_anatomy(
    service_port: int,
    stack: ExitStack,
    cpus: str,
    plan: Plan,
) -> dict[str, Any]:
    """The same ``GET /ping`` bytes from ever thinner servers on the same CPU: the service
    (gunicorn + Flask + the service's hooks), gunicorn + a bare Flask app, gunicorn + a bare WSGI
    function, and a blocking Python socket server (the kernel's loopback round trip)."""
    servers: dict[str, ServerProcess] = {}
    for kind in FLOOR_KINDS:
        server = floor_server(kind, cpus=cpus)
        stack.callback(server.kill)
        servers[kind] = server.start()
    clients = {name: KeepAlive(server.port) for name, server in servers.items()}
    clients["service"] = KeepAlive(service_port)
    for client in clients.values():
        stack.callback(client.close)
    variants: dict[str, Callable[[], Any]] = {
        name: functools.partial(client.request, "GET", "/ping") for name, client in clients.items()
    }
    for fn in variants.values():
        for _ in range(10):
            fn()
    log("floors: the floor's anatomy")
    samples = interleaved(variants, rounds=plan.hop_rounds, block=plan.hop_block)
    return {name: stats_us(s) for name, s in samples.items()}


def measure_floors(
    base: Config,
    state: Path,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    plan: Plan,
    jpeg: bytes,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    calls_var.set([])  # as inside a request: TimedDomain records every call

    probe = _Probe()
    timed_probe = TimedDomain(probe, "probe", "inprocess")
    direct, wrapped = [], []
    for _ in range(plan.probe_blocks):
        direct.append(_loop_ns(probe.call))
        wrapped.append(_loop_ns(timed_probe.call))
        calls_var.get().clear()  # type: ignore[union-attr]
    out["probe"] = {"direct": stats_us(direct), "timed": stats_us(wrapped)}

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(base.auth.bcrypt_rounds))
    bcrypt_ns = []
    for _ in range(plan.bcrypt_hashes):
        started = perf_counter_ns()
        bcrypt.checkpw(PASSWORD.encode(), hashed)
        bcrypt_ns.append(perf_counter_ns() - started)
    out["bcrypt"] = {"rounds": base.auth.bcrypt_rounds, **stats_us(bcrypt_ns)}

    with ExitStack() as stack:
        log("floors: starting the four services")
        services = start_services(HTTP_SERVICES, base, state / "services", stack, cpus=server_cpus)
        out["placement"] = {
            d: procstat.cpus_allowed(s.pid) for d, s in services.items() if s.pid is not None
        }
        inproc_config = lab_config(base, state / "inprocess", {})
        inproc = _started(build_monolith(inproc_config), stack).registry
        remote_config = lab_config(base, state / "http", {d: s.url for d, s in services.items()})
        remote = _started(build_monolith(remote_config), stack).registry
        log("floors: seeding (register + login at the configured bcrypt cost)")
        here, there = _seed_domains(inproc, jpeg), _seed_domains(remote, jpeg)

        impl = _bare_auth(inproc_config, stack)
        got = interleaved(
            {
                "direct": lambda: impl.get_user(here["user_id"]),
                "timed": lambda: inproc.auth.get_user(here["user_id"]),
            },
            rounds=plan.call_samples // 50,
            block=50,
        )
        out["get_user"] = {name: stats_us(s) for name, s in got.items()}

        credentials = ServiceCredentials(base.transport.internal_token)
        header = f"Bearer {credentials.token_for('auth')}"
        verify = interleaved(
            {"verify": lambda: credentials.verify(header, "auth")}, rounds=10, block=100
        )
        out["credential_verify"] = stats_us(verify["verify"])

        out["anatomy"] = _floor_anatomy(services["auth"].port, stack, server_cpus_spec, plan)

        hops: dict[str, Any] = {}
        for name, domain, call, wire in HOPS:
            service = services[domain]
            floor_client = KeepAlive(service.port)
            stack.callback(floor_client.close)
            raw_client = KeepAlive(service.port)
            stack.callback(raw_client.close)
            transport = _transport_stack(domain, service.url, remote_config)
            stack.callback(transport.close)
            method, path, payload, authenticated = wire(there)
            body = json.dumps(payload).encode() if payload is not None else None
            headers = {"Content-Type": "application/json"} if body else {}
            if authenticated:
                headers["Authorization"] = f"Bearer {credentials.token_for(domain)}"

            def raw(
                client: KeepAlive = raw_client,
                method: str = method,
                path: str = path,
                body: bytes | None = body,
                headers: dict[str, str] = headers,
            ) -> None:
                status, _ = client.request(method, path, body, headers)
                assert status == 200, status

            def via_transport(
                transport: Transport = transport,
                method: str = method,
                path: str = path,
                payload: Any = payload,
                authenticated: bool = authenticated,
                operation: str = name,
                domain: str = domain,
            ) -> None:
                """What the domain client does around the transport, minus its codec: the
                credential, the JSON body, the wire request."""
                body = json.dumps(payload).encode() if payload is not None else None
                headers = {"Content-Type": "application/json"} if body else {}
                if authenticated:
                    headers["Authorization"] = f"Bearer {credentials.token_for(domain)}"
                request = WireRequest(method, path, operation, True, headers, body)
                response = transport.send(request)
                assert response.status == 200, response.status

            def ping_transport(transport: Transport = transport, domain: str = domain) -> None:
                response = transport.send(WireRequest("GET", "/ping", f"{domain}.ping", False))
                assert response.status == 200, response.status

            variants: dict[str, Callable[[], Any]] = {
                "floor": functools.partial(floor_client.request, "GET", "/ping"),
                "ping_transport": ping_transport,
                "stdlib": raw,
                "transport": via_transport,
                "http": functools.partial(call, remote, there),
                "inprocess": functools.partial(call, inproc, here),
            }
            for fn in variants.values():  # warm: connections, caches, first-call imports
                for _ in range(5):
                    fn()
            log(f"floors: {name}")
            samples = interleaved(variants, rounds=plan.hop_rounds, block=plan.hop_block)
            hops[name] = {"domain": domain, **{v: stats_us(s) for v, s in samples.items()}}
            hops[name]["python_calls"] = {
                v: python_calls(variants[v]) for v in ("inprocess", "stdlib", "transport", "http")
            }
        out["hops"] = hops
    return out


def _started(monolith: Monolith, stack: ExitStack) -> Monolith:
    """A built monolith as a server runs it: tables made, event-feed pullers running."""
    stack.callback(monolith.close)
    monolith.start()
    return monolith


def _bare_auth(config: Config, stack: ExitStack) -> Any:
    """auth's in-process implementation on the same database, built as the composition root
    builds it but not wrapped in ``TimedDomain``: the direct call the wrapper is measured
    against."""
    engine = make_engine(config.database_url)
    stack.callback(engine.dispose)
    context = BuildContext(config, make_session_factory(engine), InlineEventBus())
    return manifest("auth").build(context)


def _transport_stack(domain: str, url: str, config: Config) -> ResilientTransport:
    """The transport stack a domain client sends through (what ``blog.wiring`` builds for an
    http domain): a breaker and retries over a keep-alive urllib3 pool."""
    settings = config.transport
    pool = PooledHttpTransport(
        url,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
    )
    breaker = CircuitBreaker(
        domain, settings.breaker_fail_max, settings.breaker_reset_timeout_seconds
    )
    return ResilientTransport(pool, breaker, retries=settings.retries)


# =========================================================================== 2. the suite


def run_suite(
    topology: str,
    out_dir: Path,
    plan: Plan,
    load_cpus: str,
    server_cpus: str,
) -> dict[str, Any]:
    path = out_dir / f"suite-{topology}.json"
    command = [
        "taskset",
        "-c",
        load_cpus,
        str(BIN / "pytest"),
        "tests/latency",
        "-q",
        "-p",
        "no:cacheprovider",
        "--benchmark-enable",
        f"--benchmark-json={path}",
        f"--benchmark-max-time={plan.suite_max_time}",
        "--benchmark-min-rounds=5",
        "--benchmark-quiet",
    ]
    env = {**os.environ, TOPOLOGY_ENV: topology, SERVER_CPUS_ENV: server_cpus}
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"suite failed for {topology}:\n{result.stdout}\n{result.stderr}")
    data = json.loads(path.read_text())
    scenarios = {}
    for bench in data["benchmarks"]:
        samples = [s * 1e9 for s in bench["stats"]["data"]]
        scenarios[bench["name"].removeprefix("test_")] = {
            **stats_us(samples),
            "server_timing": bench["extra_info"].get("server_timing", {}),
        }
    return {"seconds": time.monotonic() - started, "scenarios": scenarios}


# =========================================================================== 3. cost


def _seed_http(client: KeepAlive) -> dict[str, Any]:
    email = f"cost-{uuid.uuid4().hex[:10]}@example.com"
    client.json(
        "POST", "/api/register", {"email": email, "name": "Cost", "password": PASSWORD}, expect=201
    )
    token = client.json("POST", "/api/login", {"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    ids = [
        client.json(
            "POST",
            "/api/posts",
            {"title": f"Seed {n}", "body": "Lorem ipsum. " * 40},
            headers,
            expect=201,
        )["id"]
        for n in range(25)
    ]
    for n in range(5):
        client.json("POST", f"/api/posts/{ids[0]}/comments", {"body": f"c{n}"}, headers, expect=201)
    return {"headers": headers, "detail": ids[0], "commented": ids[1]}


def _http_scenarios(
    seed: dict[str, Any],
    upload: tuple[bytes, str],
) -> dict[str, Callable[[KeepAlive], None]]:
    headers = seed["headers"]
    post_body = json.dumps({"title": "A cost post", "body": "Lorem ipsum. " * 40}).encode()
    comment_body = json.dumps({"body": "Nice post, thanks."}).encode()
    card = json.dumps(CARD).encode()
    json_headers = {**headers, "Content-Type": "application/json"}
    upload_body, upload_type = upload
    counter = iter(range(10**9))
    run = uuid.uuid4().hex[:8]

    def check(expect: int, result: tuple[int, bytes]) -> None:
        if result[0] != expect:
            raise AssertionError(f"expected {expect}, got {result[0]}: {result[1][:300]!r}")

    return {
        "token_verify": lambda c: check(200, c.request("GET", "/api/me", None, headers)),
        "list_posts": lambda c: check(200, c.request("GET", "/api/posts")),
        "post_detail": lambda c: check(200, c.request("GET", f"/api/posts/{seed['detail']}")),
        "create_post": lambda c: check(
            201, c.request("POST", "/api/posts", post_body, json_headers)
        ),
        "comment": lambda c: check(
            201,
            c.request(
                "POST", f"/api/posts/{seed['commented']}/comments", comment_body, json_headers
            ),
        ),
        "payment": lambda c: check(
            201,
            c.request(
                "POST",
                "/api/payment",
                card,
                {**json_headers, "Idempotency-Key": f"cost-{run}-{next(counter)}"},
            ),
        ),
        "upload_1mp_jpeg": lambda c: check(
            201,
            c.request("POST", "/api/upload", upload_body, {**headers, "Content-Type": upload_type}),
        ),
    }


def _start_topology(
    topology: Topology,
    base: Config,
    state: Path,
    stack: ExitStack,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    service_cpus: Mapping[str, set[int]] | None = None,
) -> tuple[ServerProcess, dict[str, list[int]]]:
    """The extracted services and the gunicorn monolith; returns it and each group's pids."""
    services: dict[str, ServerProcess] = {}
    for domain in topology.extracted:
        cpus = (service_cpus or {}).get(domain, server_cpus)
        services.update(start_services([domain], base, state / "services", stack, cpus=cpus))
    monolith = start_monolith(
        base,
        state / "monolith",
        {d: s.url for d, s in services.items()},
        stack,
        workers=2,
        cpus=server_cpus_spec,
    )
    processes = {"monolith": monolith, **services}
    groups = {}
    for group, server in processes.items():
        assert server.pid is not None
        groups[group] = procstat.process_tree(server.pid)
    return monolith, groups


def measure_cost(
    topology: Topology,
    base: Config,
    state: Path,
    plan: Plan,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    upload: tuple[bytes, str],
) -> dict[str, Any]:
    with ExitStack() as stack:
        monolith, groups = _start_topology(
            topology, base, state, stack, server_cpus, server_cpus_spec
        )
        client = KeepAlive(monolith.port)
        stack.callback(client.close)
        seed = _seed_http(client)
        every = [pid for pids in groups.values() for pid in pids]
        placement = {
            group: sorted({procstat.cpus_allowed(p) for p in pids})
            for group, pids in groups.items()
        }

        before = procstat.cpu_ns(every)
        time.sleep(plan.idle_seconds)
        idle_ms_per_s = (procstat.cpu_ns(every) - before) / 1e6 / plan.idle_seconds

        ticks_before = procstat.cpu_ticks_seconds(every)
        ns_before_all = procstat.cpu_ns(every)
        requests_total = 0
        scenarios: dict[str, Any] = {}
        for name, fn in _http_scenarios(seed, upload).items():
            count = plan.cost_uploads if name.startswith("upload") else plan.cost_requests
            for _ in range(min(plan.cost_warmup, count)):
                fn(client)
            cpu_before = {g: procstat.cpu_ns(p) for g, p in groups.items()}
            wall_started = perf_counter_ns()
            latencies = []
            for _ in range(count):
                started = perf_counter_ns()
                fn(client)
                latencies.append(perf_counter_ns() - started)
            wall_us = (perf_counter_ns() - wall_started) / 1000
            cpu_after = {g: procstat.cpu_ns(p) for g, p in groups.items()}
            requests_total += count + min(plan.cost_warmup, count)
            per_group = {g: (cpu_after[g] - cpu_before[g]) / count / 1000 for g in groups}
            raw = sum(per_group.values())
            background = idle_ms_per_s * wall_us / 1e6 * 1000 / count  # µs per request
            scenarios[name] = {
                "cpu_us_per_request": raw,
                "cpu_us_per_request_net": max(raw - background, 0.0),
                "cpu_us_by_process": per_group,
                "latency": stats_us(latencies),
            }
        ticks = procstat.cpu_ticks_seconds(every) - ticks_before
        precise = (procstat.cpu_ns(every) - ns_before_all) / 1e9
        memories = {g: procstat.memory(p) for g, p in groups.items()}
        return {
            "placement": placement,
            "idle_cpu_ms_per_s": idle_ms_per_s,
            "scenarios": scenarios,
            "cross_check": {
                "stat_ticks_s": ticks,
                "schedstat_s": precise,
                "requests": requests_total,
            },
            "memory": {
                g: {"rss_mb": m.rss_kb / 1024, "pss_mb": m.pss_kb / 1024, "processes": m.processes}
                for g, m in memories.items()
            },
        }


# =========================================================================== 4. fault isolation


FAULT_VARIANTS = (
    ("images in-process", (), None),
    ("images extracted, same CPU", ("images",), "server"),
    ("images extracted, own CPU", ("images",), "load"),
)


def _burst(
    port: int, plan: Plan, upload: tuple[bytes, str], headers: Mapping[str, str], probe: KeepAlive
) -> tuple[list[float], list[float], float]:
    """Concurrent uploads (bounded: threads × uploads each) while ``probe`` reads the front
    page back to back; returns the probe's and the uploads' latencies and the burst's length."""
    body, content_type = upload
    upload_headers = {**headers, "Content-Type": content_type}
    uploads: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def uploader() -> None:
        with KeepAlive(port, timeout=60) as conn:
            for _ in range(plan.burst_uploads):
                started = perf_counter_ns()
                status, answer = conn.request("POST", "/api/upload", body, upload_headers)
                with lock:
                    if status == 201:
                        uploads.append(perf_counter_ns() - started)
                    else:
                        failures.append(f"{status} {answer[:200]!r}")

    threads = [threading.Thread(target=uploader, daemon=True) for _ in range(plan.burst_threads)]
    started_at = time.monotonic()
    for thread in threads:
        thread.start()
    during: list[float] = []
    deadline = started_at + 120
    while (
        any(t.is_alive() for t in threads)
        and len(during) < plan.burst_probe_cap
        and time.monotonic() < deadline
    ):
        started = perf_counter_ns()
        status, _ = probe.request("GET", "/api/posts")
        during.append(perf_counter_ns() - started)
        assert status == 200, status
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise RuntimeError(f"uploads failed: {failures[:3]}")
    return during, uploads, time.monotonic() - started_at


def measure_fault_variant(
    variant: tuple[str, tuple[str, ...], str | None],
    base: Config,
    state: Path,
    plan: Plan,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    load_cpus: set[int] | None,
    upload: tuple[bytes, str],
) -> dict[str, Any]:
    label, extracted, images_on = variant
    images_cpus = load_cpus if images_on == "load" else server_cpus
    with ExitStack() as stack:
        monolith, groups = _start_topology(
            Topology(label, extracted),
            base,
            state / label.replace(" ", "-").replace(",", ""),
            stack,
            server_cpus,
            server_cpus_spec,
            service_cpus={"images": images_cpus} if images_cpus else None,
        )
        placement = {
            group: sorted({procstat.cpus_allowed(p) for p in pids})
            for group, pids in groups.items()
        }
        client = KeepAlive(monolith.port)
        stack.callback(client.close)
        seed = _seed_http(client)
        for _ in range(20):
            client.request("GET", "/api/posts")
        quiet = []
        for _ in range(plan.quiet_requests):
            started = perf_counter_ns()
            status, _ = client.request("GET", "/api/posts")
            quiet.append(perf_counter_ns() - started)
            assert status == 200, status
        during, uploads, seconds = _burst(monolith.port, plan, upload, seed["headers"], client)
        return {
            "variant": label,
            "placement": placement,
            "quiet": stats_us(quiet),
            "burst": stats_us(during) if during else None,
            "uploads": stats_us(uploads),
            "burst_seconds": seconds,
            "concurrency": plan.burst_threads,
        }


# =========================================================================== main


NOISY_CPUS = 0.25
"""Other work using more than a quarter of a CPU during a run makes it worth running again."""
RETRY_SECONDS = 60.0
"""The time the matrix may spend running noisy parts again (the rest takes about 4 minutes)."""


def cpu_speed_us(cpus: set[int] | None) -> float:
    """The median time (µs) of a fixed pure-Python loop on ``cpus``: how fast the machine runs
    Python right now. A virtual machine can slow down with nothing visible inside it (its host
    is busy), and then every CPU time and latency of a part grows with it."""

    def work() -> int:
        total = 0
        for i in range(20_000):
            total += i * i
        return total

    samples = []
    with pinned(cpus):
        for _ in range(15):
            started = perf_counter_ns()
            work()
            samples.append((perf_counter_ns() - started) / 1000)
    return statistics.median(samples)


class Runner:
    """Runs each part, measures the CPU other work used meanwhile and the machine's speed, and
    runs a part once more when other work was busy, as long as the retry allowance lasts;
    keeps the quieter run."""

    def __init__(self, retry_seconds: float, server_cpus: set[int] | None) -> None:
        self.started = time.monotonic()
        self.spare = retry_seconds
        self.server_cpus = server_cpus

    def run(self, label: str, part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        for attempt in (1, 2):
            began = time.monotonic()
            speed = cpu_speed_us(self.server_cpus)
            with procstat.Neighbours() as neighbours:
                result = part()
            took = time.monotonic() - began
            result["others_cpu"] = neighbours.cpus
            result["speed_us"] = (speed + cpu_speed_us(self.server_cpus)) / 2
            result["attempts"] = attempt
            if best is None or neighbours.cpus < best["others_cpu"]:
                best = result
            if attempt == 2 or neighbours.cpus <= NOISY_CPUS or took > self.spare:
                break
            self.spare -= took
            log(f"{label}: other work used {neighbours.cpus:.2f} CPU meanwhile; once more")
        assert best is not None
        return best


def machine_info(load_cpus: str, server_cpus: str) -> dict[str, Any]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    packages = (
        "flask",
        "werkzeug",
        "gunicorn",
        "urllib3",
        "sqlalchemy",
        "pillow",
        "bcrypt",
        "pytest-benchmark",
    )

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in packages},
        "load_cpus": load_cpus,
        "server_cpus": server_cpus,
        "loadavg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The latency matrix: reports/latency.md + .png")
    parser.add_argument("--quick", action="store_true", help="a short dry run of every part")
    parser.add_argument("--load-cpus", default="0", help="CPUs of the load generator (taskset)")
    parser.add_argument("--server-cpus", default="1", help="CPUs of every server (taskset)")
    parser.add_argument("--topologies", default=",".join(MATRIX))
    parser.add_argument("--out", type=Path, default=REPORTS)
    parser.add_argument(
        "--skip", default="", help="comma list of parts to skip: floors,suite,cost,fault"
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan()
    skip = set(filter(None, args.skip.split(",")))
    topologies = [parse_topology(name) for name in args.topologies.split(",")]
    load_cpus, server_cpus = parse_cpus(args.load_cpus), parse_cpus(args.server_cpus)
    available = os.sched_getaffinity(0)
    if not (load_cpus or set()) <= available or not (server_cpus or set()) <= available:
        parser.error(f"this machine has CPUs {sorted(available)}")
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # this process (and the pytest runs) on the load CPUs
    procstat.become_subreaper()  # so the CPU of every server this run kills is counted as ours

    base = base_config()
    info = machine_info(args.load_cpus, args.server_cpus)
    jpeg = jpeg_1mp()
    upload = multipart_image(jpeg)
    info["jpeg"] = {"size": JPEG_SIZE, "bytes": len(jpeg)}
    info["config"] = {
        "source": base.source,
        "bcrypt_rounds": base.auth.bcrypt_rounds,
        "thumbnail": [base.images.thumbnail_width, base.images.thumbnail_height],
        "jpeg_quality": base.images.jpeg_quality,
        "per_page": base.posts.per_page_default,
    }
    results: dict[str, Any] = {"machine": info, "plan": plan.__dict__}
    runner = Runner(RETRY_SECONDS if not args.quick else 0.0, server_cpus)
    started = runner.started
    with tempfile.TemporaryDirectory(prefix="latency-matrix-") as tmp:
        state = Path(tmp)
        if "floors" not in skip:
            log("part 1/4: floors and extracted hops")
            results["floors"] = runner.run(
                "floors",
                lambda: measure_floors(
                    base, state / "floors", server_cpus, args.server_cpus, plan, jpeg
                ),
            )
        if "suite" not in skip:
            results["suite"] = {}
            for topology in topologies:
                log(f"part 2/4: latency suite, {topology.name}")
                results["suite"][topology.name] = runner.run(
                    f"suite {topology.name}",
                    functools.partial(
                        run_suite, topology.name, state, plan, args.load_cpus, args.server_cpus
                    ),
                )
        if "cost" not in skip:
            results["cost"] = {}
            for topology in topologies:
                log(f"part 3/4: cost, {topology.name}")
                results["cost"][topology.name] = runner.run(
                    f"cost {topology.name}",
                    functools.partial(
                        measure_cost,
                        topology,
                        base,
                        state / f"cost-{topology.name}-{uuid.uuid4().hex[:6]}",
                        plan,
                        server_cpus,
                        args.server_cpus,
                        upload,
                    ),
                )
        if "fault" not in skip:
            results["fault"] = []
            for variant in FAULT_VARIANTS:
                log(f"part 4/4: fault isolation, {variant[0]}")
                results["fault"].append(
                    runner.run(
                        f"fault {variant[0]}",
                        functools.partial(
                            measure_fault_variant,
                            variant,
                            base,
                            state / f"fault-{uuid.uuid4().hex[:6]}",
                            plan,
                            server_cpus,
                            args.server_cpus,
                            load_cpus,
                            upload,
                        ),
                    )
                )
    info["loadavg_end"] = os.getloadavg()
    info["commit_end"] = machine_info(args.load_cpus, args.server_cpus)["commit"]
    info["seconds"] = time.monotonic() - started

    from bench.report import write_chart, write_markdown

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    markdown = write_markdown(results, args.out / "latency.md")
    chart = write_chart(results, args.out / "latency.png")
    log(
        f"done in {info['seconds']:.0f}s: {args.out / 'latency.md'}"
        + (f", {chart}" if chart else "")
    )
    print()
    print("\n".join(line for line in markdown.splitlines() if line.startswith(("PASS", "MISS"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
