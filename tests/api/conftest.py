"""The public API suite runs once per topology: the monolith, each domain extracted alone, and
all four extracted at once. Extraction must change what a call costs, never what it does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blog.config import Config
from tests.support import HTTP_DOMAINS, make_config, start_threaded_service

TOPOLOGIES: dict[str, tuple[str, ...]] = {
    "monolith": (),
    **{f"{domain}-http": (domain,) for domain in HTTP_DOMAINS},
    "all-http": HTTP_DOMAINS,
}


@pytest.fixture(params=list(TOPOLOGIES))
def topology(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return TOPOLOGIES[request.param]


@pytest.fixture
def config(tmp_path: Path, topology: tuple[str, ...]) -> Iterator[Config]:
    servers = [start_threaded_service(domain, tmp_path) for domain in topology]
    try:
        services = {
            domain: {"mode": "http", "url": server.url}
            for domain, server in zip(topology, servers, strict=True)
        }
        yield make_config(tmp_path, services=services)
    finally:
        for server in servers:
            server.stop()
