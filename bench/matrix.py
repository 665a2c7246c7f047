"""The latency matrix: every topology, F0 and the ladder, each hop, the post page, throughput per
CPU, the idle cost, the lean baseline, the cost per request, fault isolation and what a
duplicated author name costs and buys; issue 9's targets judged with PASS/FAIL, and a line of
history per run.

    make bench-matrix                     # or: .venv/bin/python bench/matrix.py [options]
    bench/matrix.py --quick --out /tmp/m  # a short smoke of every part, written elsewhere
    bench/matrix.py --label "pool on http.client"   # names this run in the history

Writes ``latency.md``, ``latency.png`` and ``latency.json`` (the numbers behind both) to
``--out`` (``reports/``), and appends the run's headline numbers under ``--label`` to
``--history`` (``reports/latency-history.json``; a full run only, unless ``--history`` is
given). About eight minutes on a 2-CPU machine; ``--quick`` takes about two.

Parts, in order (``--skip`` takes their names):

1. ``floors``: a direct method call, the same call through ``TimedDomain`` (the in-process
   interface), ``auth.get_user`` both ways, bcrypt at the configured cost; then each extracted
   hop (``bench/hops.py``) in-process and over HTTP, interleaved with F0, split into: the
   service's ``/ping``, the service's work beyond it, the client's transport stack (as
   ``blog.wiring.connect`` builds it) and the domain client's encoding and decoding.
2. ``ladder``: F0 (a socket server's fixed answer) and every rung above it: each server with a
   bare WSGI function and a bare Flask app, the posts service's ``/ping`` under each, our
   transport stack and our whole client (``bench/ladder.py``).
3. ``suite``: the latency suite (``tests/latency``, pytest-benchmark) once per topology.
4. ``cost``: the monolith under the production server, driven by a keep-alive ``http.client``
   loop; CPU per request summed over the monolith and every extracted service process, from
   /proc, and their memory.
5. ``head``: the monolith and everything extracted side by side: the post page interleaved,
   the idle cost, throughput per CPU with wrk, and the lean baseline (``bench/head_to_head.py``).
6. ``fault``: ``GET /api/posts`` latency, quiet and during a bounded burst of concurrent
   1-megapixel uploads, with images in-process and extracted.
7. ``scale``: images at 1, 2 and 3 instances (upload throughput, the reads' p99 meanwhile), and
   one of three killed under load and started again (``bench/scaleout.py``).
8. ``network``: everything extracted on hosts of their own, the post page, create post and
   upload at an RTT of 0, 0.5, 2 and 10 ms, keep-alive on and off, fan-out, the delay proxy's
   own cost (``bench/network.py``; root only: without root the part says so and the report
   quotes the last ``network.md`` that ``sudo make bench-network`` wrote).
9. ``duplication``: the tutorial's data-duplication trade-off, everything extracted: how long
   the post list's copy of an author's name lags a rename (``PATCH /api/me``), the list's domain
   calls (none to auth), and the post page with the auth service up, then killed: still 200,
   its author from the post's copy (``bench/duplication.py``).

The soak (``make soak``, ten minutes) writes a report of its own; this report links it.

Placement: this process (the load generator, and the in-process monolith of parts 1 and 3) and
wrk run on ``--load-cpus`` (CPU 0); every server (extracted services, the monolith under the
production server, the ladder's servers, the lean route) on ``--server-cpus`` (CPU 1), set with
``taskset`` and checked in /proc afterwards. Loopback only; every loop is bounded in count or
time.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from time import perf_counter_ns
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bcrypt  # noqa: E402

from bench import history, scaleout  # noqa: E402
from bench.duplication import measure_duplication  # noqa: E402
from bench.head_to_head import measure_head_to_head  # noqa: E402
from bench.hops import HOPS  # noqa: E402
from bench.hops import available as hops_available  # noqa: E402
from bench.ladder import measure_ladder  # noqa: E402
from bench.plan import Plan  # noqa: E402
from bench.sampling import interleaved, log, stats_us  # noqa: E402
from bench.topologies import PASSWORD, seed_http, start_topology  # noqa: E402
from blog.config import Config  # noqa: E402
from blog.db import make_engine, make_session_factory  # noqa: E402
from blog.domains import HTTP_SERVICES, manifest  # noqa: E402
from blog.events import InlineEventBus  # noqa: E402
from blog.manifest import BuildContext  # noqa: E402
from blog.timing import TimedDomain, calls_var  # noqa: E402
from blog.transport import Transport, WireRequest  # noqa: E402
from blog.transport.credentials import ServiceCredentials  # noqa: E402
from blog.wiring import Domains, Monolith, build_monolith, connect  # noqa: E402
from lab import procstat, wrk  # noqa: E402
from lab.configs import base_config, lab_config  # noqa: E402
from lab.cpus import SERVER_CPUS_ENV, parse_cpus, pinned  # noqa: E402
from lab.keepalive import KeepAlive  # noqa: E402
from lab.payloads import JPEG_SIZE, jpeg_1mp, multipart_image  # noqa: E402
from lab.processes import floor_server, start_services  # noqa: E402
from lab.topology import MATRIX, TOPOLOGY_ENV, Topology, parse_topology  # noqa: E402

REPORTS = ROOT / "reports"
HISTORY = REPORTS / "latency-history.json"
BIN = Path(sys.executable).parent
CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


# =========================================================================== 1. floors


class _Probe:
    def call(self, value: int) -> int:
        return value


def _loop_ns(fn: Callable[[int], Any], loops: int = 1000) -> float:
    started = perf_counter_ns()
    for _ in range(loops):
        fn(1)
    return (perf_counter_ns() - started) / loops


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

        f0_server = floor_server("socket", cpus=server_cpus_spec)
        stack.callback(f0_server.kill)
        f0_server.start()
        f0_client = KeepAlive(f0_server.port)
        stack.callback(f0_client.close)
        assert f0_server.pid is not None
        out["f0_placement"] = procstat.cpus_allowed(f0_server.pid)

        hops: dict[str, Any] = {}
        for name, domain, call, wire in HOPS:
            if not hops_available(name, inproc):
                log(f"floors: {name} is no longer in the interface; skipped")
                continue
            service = services[domain]
            floor_client = KeepAlive(service.port)
            stack.callback(floor_client.close)
            raw_client = KeepAlive(service.port)
            stack.callback(raw_client.close)
            # the transport stack exactly as the composition root builds it for a domain client
            transport: Transport = connect(domain, remote_config, service.url).transport
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

            in_service: list[float] = []

            def via_client(call: Any = call, out: list[float] = in_service) -> None:
                """The domain client's call, and the service's own time for it (its
                ``Server-Timing``, as ``TimedDomain`` recorded it), in ns like the samples."""
                call(remote, there)
                recorded = calls_var.get()
                if recorded and recorded[-1][3] is not None:
                    out.append(recorded[-1][3] * 1e9)

            variants: dict[str, Callable[[], Any]] = {
                "f0": functools.partial(f0_client.request, "GET", "/ping"),
                "floor": functools.partial(floor_client.request, "GET", "/ping"),
                "ping_transport": ping_transport,
                "stdlib": raw,
                "transport": via_transport,
                "http": via_client,
                "inprocess": functools.partial(call, inproc, here),
            }
            for fn in variants.values():  # warm: connections, caches, first-call imports
                for _ in range(5):
                    fn()
            log(f"floors: {name}")
            in_service.clear()
            samples = interleaved(variants, rounds=plan.hop_rounds, block=plan.hop_block)
            hops[name] = {"domain": domain, **{v: stats_us(s) for v, s in samples.items()}}
            if in_service:
                hops[name]["in_service"] = stats_us(list(in_service))
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
        "--benchmark-only",  # the benchmarks: not the soak or other tests beside them
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
        running = start_topology(topology, base, state, stack, server_cpus, server_cpus_spec)
        groups, every, placement = running.groups, running.pids, running.placement()
        client = KeepAlive(running.monolith.port)
        stack.callback(client.close)
        seed = seed_http(client, prefix="cost")

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
        running = start_topology(
            Topology(label, extracted),
            base,
            state / label.replace(" ", "-").replace(",", ""),
            stack,
            server_cpus,
            server_cpus_spec,
            service_cpus={"images": images_cpus} if images_cpus else None,
        )
        placement = running.placement()
        monolith = running.monolith
        client = KeepAlive(monolith.port)
        stack.callback(client.close)
        seed = seed_http(client, prefix="fault")
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
RETRY_SECONDS = 150.0
"""The time the matrix may spend running noisy parts again (the rest takes about 4.5 minutes, so
a full run stays within about 7): enough to run the longest part, part 5 (about a minute), once
more."""


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
        "granian",
        "waitress",
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
        "wrk": _wrk_version(),
    }


def _wrk_version() -> str | None:
    """wrk's version (its usage text's first line), or None when it is not installed."""
    binary = wrk.wrk_path()
    if binary is None:
        return None
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    words = (result.stdout or result.stderr).split()
    return words[1] if len(words) > 1 else None


PARTS = (
    "floors",
    "ladder",
    "suite",
    "cost",
    "head",
    "fault",
    "scale",
    "network",
    "duplication",
)
"""The parts, in the order they run (``--skip`` names them)."""


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The latency matrix: reports/latency.md + .png, and a history entry"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke of every part")
    parser.add_argument("--load-cpus", default="0", help="CPUs of the load generator (taskset)")
    parser.add_argument("--server-cpus", default="1", help="CPUs of every server (taskset)")
    parser.add_argument("--topologies", default=",".join(MATRIX))
    parser.add_argument(
        "--out", type=Path, default=REPORTS, help="where latency.md, .png and .json go"
    )
    parser.add_argument(
        "--skip", default="", help=f"comma list of parts to skip: {','.join(PARTS)}"
    )
    parser.add_argument(
        "--label",
        default=None,
        help="what changed since the last run, for the history (default: the short commit and "
        "its subject)",
    )
    parser.add_argument(
        "--history",
        type=Path,
        default=None,
        help=f"the history file to append this run to (default {HISTORY.relative_to(ROOT)}; "
        "a full run records there, a --quick or partial run only when this is given)",
    )
    parser.add_argument(
        "--no-history", action="store_true", help="record nothing (the report still shows it)"
    )
    args = parser.parse_args(argv)
    unknown = set(filter(None, args.skip.split(","))) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    load_cpus, server_cpus = parse_cpus(args.load_cpus), parse_cpus(args.server_cpus)
    available = os.sched_getaffinity(0)
    if not (load_cpus or set()) <= available or not (server_cpus or set()) <= available:
        parser.error(f"this machine has CPUs {sorted(available)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    plan = Plan.quick() if args.quick else Plan()
    skip = set(filter(None, args.skip.split(",")))
    topologies = [parse_topology(name) for name in args.topologies.split(",")]
    load_cpus, server_cpus = parse_cpus(args.load_cpus), parse_cpus(args.server_cpus)
    full = not args.quick and not skip and args.topologies == ",".join(MATRIX)
    history_path = args.history or HISTORY
    record = not args.no_history and (args.history is not None or full)
    label = args.label or history.default_label(ROOT)
    if "head" not in skip:
        wrk.ensure_wrk()  # before anything runs: says how to install it, or installs it as root
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # this process (and the pytest runs) on the load CPUs
    procstat.become_subreaper()  # so the CPU of every server this run kills is counted as ours

    base = base_config()
    info = machine_info(args.load_cpus, args.server_cpus)
    jpeg = jpeg_1mp()
    upload = multipart_image(jpeg)
    info["jpeg"] = {"size": JPEG_SIZE, "bytes": len(jpeg)}
    info["server"] = base.server.name
    info["config"] = {
        "source": base.source,
        "bcrypt_rounds": base.auth.bcrypt_rounds,
        "thumbnail": [base.images.thumbnail_width, base.images.thumbnail_height],
        "jpeg_quality": base.images.jpeg_quality,
        "per_page": base.posts.per_page_default,
        "server": {
            "name": base.server.name,
            "workers": base.server.workers,
            "threads": base.server.threads,
        },
    }
    results: dict[str, Any] = {
        "machine": info,
        "plan": plan.as_dict(),
        "quick": args.quick,
        "label": label,
    }
    runner = Runner(RETRY_SECONDS if not args.quick else 0.0, server_cpus)
    started = runner.started
    steps = len(PARTS) - len(skip)
    step = iter(range(1, steps + 1))
    with tempfile.TemporaryDirectory(prefix="latency-matrix-") as tmp:
        state = Path(tmp)
        if "floors" not in skip:
            log(f"part {next(step)}/{steps}: floors and extracted hops")
            results["floors"] = runner.run(
                "floors",
                lambda: measure_floors(
                    base, state / "floors", server_cpus, args.server_cpus, plan, jpeg
                ),
            )
        if "ladder" not in skip:
            log(f"part {next(step)}/{steps}: F0 and the ladder")
            results["ladder"] = runner.run(
                "ladder",
                lambda: measure_ladder(
                    base,
                    state / "ladder",
                    server_cpus,
                    args.server_cpus,
                    rounds=plan.ladder_rounds,
                    block=plan.hop_block,
                ),
            )
        if "suite" not in skip:
            results["suite"] = {}
            number = next(step)
            for topology in topologies:
                log(f"part {number}/{steps}: latency suite, {topology.name}")
                results["suite"][topology.name] = runner.run(
                    f"suite {topology.name}",
                    functools.partial(
                        run_suite, topology.name, state, plan, args.load_cpus, args.server_cpus
                    ),
                )
        if "cost" not in skip:
            results["cost"] = {}
            number = next(step)
            for topology in topologies:
                log(f"part {number}/{steps}: cost, {topology.name}")
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
        if "head" not in skip:
            log(f"part {next(step)}/{steps}: monolith against all extracted (wrk, idle, lean)")
            results["head_to_head"] = runner.run(
                "head to head",
                lambda: measure_head_to_head(
                    base,
                    state / f"head-{uuid.uuid4().hex[:6]}",
                    plan,
                    server_cpus,
                    args.server_cpus,
                    args.load_cpus,
                ),
            )
        if "fault" not in skip:
            results["fault"] = []
            number = next(step)
            for variant in FAULT_VARIANTS:
                log(f"part {number}/{steps}: fault isolation, {variant[0]}")
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
        if "scale" not in skip:
            log(f"part {next(step)}/{steps}: scale-out and failover of images")
            results["scale"] = runner.run("scale", lambda: scaleout.run(state / "scale"))
        if "network" not in skip:
            number = next(step)
            if os.geteuid() == 0:
                from bench.network import measure_network

                log(f"part {number}/{steps}: across the network (hosts, RTT 0 to 10 ms)")
                results["network"] = measure_network(base, quick=args.quick, log=log)
            else:
                log(f"part {number}/{steps}: across the network: skipped, it needs root")
                results["network"] = {"skipped": "needs root (network namespaces)"}
        if "duplication" not in skip:
            log(f"part {next(step)}/{steps}: data duplication (a name's copy: lag and fallback)")
            results["duplication"] = runner.run(
                "duplication",
                lambda: measure_duplication(
                    base,
                    state / f"duplication-{uuid.uuid4().hex[:6]}",
                    plan,
                    server_cpus,
                    args.server_cpus,
                ),
            )
    info["loadavg_end"] = os.getloadavg()
    info["commit_end"] = machine_info(args.load_cpus, args.server_cpus)["commit"]
    info["seconds"] = time.monotonic() - started

    from bench.report import write_chart, write_markdown
    from bench.targets import evaluate

    results["targets"] = evaluate(results)
    if record:
        runs = history.append(history_path, history.entry(label, results, results["targets"]))
        log(f"history: recorded as {label!r} in {history_path} ({len(runs)} runs)")
    else:
        runs = [*history.load(history_path), history.entry(label, results, results["targets"])]
        runs[-1]["unrecorded"] = True
    results["history"] = {"path": str(history_path), "recorded": record, "runs": runs}

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    network = results.get("network")
    if network and "skipped" not in network:  # its own report too, as make bench-network writes
        from bench.network import draw_chart, render_markdown

        (args.out / "network.json").write_text(json.dumps(network, indent=2) + "\n")
        drawn = draw_chart(network, args.out / "network.png")
        (args.out / "network.md").write_text(
            render_markdown(network, "network.png" if drawn else None)
        )
    write_markdown(results, args.out / "latency.md")
    chart = write_chart(results, args.out / "latency.png")
    log(
        f"done in {info['seconds']:.0f}s: {args.out / 'latency.md'}"
        + (f", {chart}" if chart else "")
    )
    print()
    print(targets_text(results["targets"]))
    return 0


def targets_text(targets: list[dict[str, Any]]) -> str:
    """The targets as plain lines for the terminal: verdict, target, measured, limit."""
    return "\n".join(
        f"{t['verdict']:<12} {t['key']}. {t['title']}: {t['measured']} (target {t['limit']})"
        for t in targets
    )


if __name__ == "__main__":
    sys.exit(main())
