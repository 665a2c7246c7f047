"""Fixtures of the latency suite: one monolith per session, in the topology under test.

The benchmarks go through the public API with Flask's test client, so the monolith runs in this
process; every hop to an extracted domain is real HTTP to a gunicorn process on a loopback port,
started here (own port, own database) and killed at the end of the session. The topology comes
from the config file, or from ``BLOG_BENCH_TOPOLOGY`` (see ``lab/topology.py``);
``BLOG_BENCH_SERVER_CPUS`` pins the services to CPUs.

Under ``make test`` pytest's addopts carry ``--benchmark-disable``: each benchmarked call runs
once, as a smoke test that keeps the suite from rotting. ``make bench`` turns benchmarking on.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from blog import create_app
from blog.config import Config
from blog.serving import ServerProcess
from blog.wiring import runtime_of
from lab.configs import base_config, lab_config
from lab.cpus import SERVER_CPUS_ENV, parse_cpus
from lab.payloads import jpeg_1mp, multipart_image
from lab.processes import start_services
from lab.procstat import cpus_allowed
from lab.server_timing import summarize_server_timing
from lab.topology import Topology, current_topology
from tests.conftest import AuthActions

SEED_POSTS = 25  # more than a page (per_page_default 20), so "list posts" always reads a full page
SEED_COMMENTS = 5
WARMUP_CALLS = 3


@pytest.fixture(scope="session")
def lab_topology() -> Topology:
    return current_topology()


@pytest.fixture(scope="session")
def lab_base_config() -> Config:
    return base_config()


@pytest.fixture(scope="session")
def lab_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("latency")


@pytest.fixture(scope="session")
def lab_services(
    lab_topology: Topology, lab_base_config: Config, lab_state: Path
) -> Iterator[dict[str, ServerProcess]]:
    """The topology's extracted services, each a gunicorn process on a free loopback port."""
    with ExitStack() as stack:
        yield start_services(
            lab_topology.extracted,
            lab_base_config,
            lab_state,
            stack,
            cpus=parse_cpus(os.environ.get(SERVER_CPUS_ENV)),
        )


@pytest.fixture(scope="session")
def lab_placement(lab_services: dict[str, ServerProcess]) -> dict[str, str]:
    """Which CPUs each process may run on (the bench process runs the monolith)."""
    placement = {"monolith+client": cpus_allowed(os.getpid())}
    for domain, service in lab_services.items():
        if service.pid is not None:
            placement[domain] = cpus_allowed(service.pid)
    return placement


@pytest.fixture(scope="session")
def lab_app(
    lab_services: dict[str, ServerProcess], lab_base_config: Config, lab_state: Path
) -> Iterator[Flask]:
    config = lab_config(lab_base_config, lab_state, {d: s.url for d, s in lab_services.items()})
    app = create_app(config)
    yield app
    runtime_of(app).close()  # before the services go: it stops the feed pullers


@dataclass
class LabClient:
    """The test client, keeping every response's ``Server-Timing`` header (a list append: the
    header is parsed after the benchmark, not inside the timed call)."""

    client: FlaskClient
    timings: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, expect: int, **kwargs: Any) -> TestResponse:
        response = self.client.open(path, method=method, **kwargs)
        if response.status_code != expect:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.get_data()!r}")
        self.timings.append(response.headers.get("Server-Timing", ""))
        return response


@pytest.fixture(scope="session")
def api(lab_app: Flask) -> LabClient:
    return LabClient(lab_app.test_client())


@dataclass(frozen=True)
class Member:
    email: str
    password: str
    headers: dict[str, str]
    id: int


@pytest.fixture(scope="session")
def member(api: LabClient) -> Member:
    """A registered, logged-in user (at the configured bcrypt cost)."""
    email, password = f"bench-{uuid.uuid4().hex[:10]}@example.com", "correct horse battery"
    actions = AuthActions(api.client)
    user = actions.register(email=email, name="Bench Reader", password=password)
    return Member(email, password, actions.login(email=email, password=password), user["id"])


@pytest.fixture(scope="session")
def seeded(api: LabClient, member: Member) -> dict[str, int]:
    """Posts enough for a full page, one post with comments for the detail page, and another
    post that the comment benchmark writes to (so the detail page does not grow)."""
    ids = [
        api.request(
            "POST",
            "/api/posts",
            201,
            headers=member.headers,
            json={"title": f"Seed post {n}", "body": "Lorem ipsum dolor sit amet. " * 20},
        ).get_json()["id"]
        for n in range(SEED_POSTS)
    ]
    for n in range(SEED_COMMENTS):
        api.request(
            "POST",
            f"/api/posts/{ids[0]}/comments",
            201,
            headers=member.headers,
            json={"body": f"Seed comment {n}"},
        )
    return {"detail": ids[0], "commented": ids[1]}


@pytest.fixture(scope="session")
def upload_body() -> tuple[bytes, str]:
    return multipart_image(jpeg_1mp())


@pytest.fixture(scope="session")
def unique() -> Callable[[str], str]:
    """``unique("pay")`` → ``pay-<run>-<n>``: a fresh key for every call in this session."""
    run, counter = uuid.uuid4().hex[:8], itertools.count()
    return lambda prefix: f"{prefix}-{run}-{next(counter)}"


@pytest.fixture
def measure(
    benchmark: Any, api: LabClient, lab_topology: Topology, lab_placement: dict[str, str]
) -> Callable[..., None]:
    """``measure(call)``: warm the call up, benchmark it, and attach the topology and the
    Server-Timing summary (per domain, median ms per request) to the saved run."""

    def run(call: Callable[[], Any], warmup: int = WARMUP_CALLS) -> None:
        if not benchmark.disabled:
            for _ in range(warmup):
                call()  # first-call costs: connections, SQLAlchemy's compiled cache, lazy imports
        api.timings.clear()
        benchmark(call)
        benchmark.extra_info["topology"] = lab_topology.name
        benchmark.extra_info["extracted"] = list(lab_topology.extracted)
        benchmark.extra_info["placement"] = lab_placement
        benchmark.extra_info["server_timing"] = summarize_server_timing(api.timings)

    return run
