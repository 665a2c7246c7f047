"""The public API suite runs once per topology: the monolith, each domain extracted alone and all
four at once over the in-process wire (the service's real app and the real client, without a
socket), all four over real sockets, and the same over RabbitMQ (email in-process, email extracted
as a worker, everything extracted). Extraction must change what a call costs, never what it does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blog.config import Config
from tests.support import (
    HTTP_DOMAINS,
    IsolatedBroker,
    ThreadedEmailWorker,
    free_port,
    make_config,
    start_threaded_service,
)


@dataclass(frozen=True)
class Topology:
    http: tuple[str, ...] = ()
    wire: tuple[str, ...] = ()
    rabbitmq: bool = False
    email_extracted: bool = False


TOPOLOGIES: dict[str, Topology] = {
    "monolith": Topology(),
    **{f"{domain}-wire": Topology(wire=(domain,)) for domain in HTTP_DOMAINS},
    "all-wire": Topology(wire=HTTP_DOMAINS),
    "all-http": Topology(http=HTTP_DOMAINS),
    "rabbitmq": Topology(rabbitmq=True),
    "rabbitmq-email-worker": Topology(rabbitmq=True, email_extracted=True),
    "rabbitmq-all-extracted": Topology(http=HTTP_DOMAINS, rabbitmq=True, email_extracted=True),
}


@pytest.fixture(params=list(TOPOLOGIES))
def topology_spec(request: pytest.FixtureRequest) -> Topology:
    return TOPOLOGIES[request.param]


@pytest.fixture
def topology(topology_spec: Topology) -> tuple[str, ...]:
    """The domains that are not in-process in this run."""
    extracted = topology_spec.http + topology_spec.wire
    return extracted + (("email",) if topology_spec.email_extracted else ())


@pytest.fixture
def modes(topology_spec: Topology) -> dict[str, str]:
    """Each domain's mode in this run."""
    found = {d: "inprocess" for d in (*HTTP_DOMAINS, "email")}
    found.update({d: "http" for d in topology_spec.http})
    found.update({d: "wire" for d in topology_spec.wire})
    if topology_spec.email_extracted:
        found["email"] = "extracted"
    return found


@pytest.fixture
def config(tmp_path: Path, topology_spec: Topology) -> Iterator[Config]:
    broker = IsolatedBroker() if topology_spec.rabbitmq else None
    extra: dict[str, Any] = broker.overrides() if broker else {}
    stoppers: list[Any] = []
    try:
        servers = [start_threaded_service(d, tmp_path, **extra) for d in topology_spec.http]
        stoppers.extend(servers)
        services: dict[str, Any] = {
            domain: {"mode": "http", "url": server.url}
            for domain, server in zip(topology_spec.http, servers, strict=True)
        }
        for domain in topology_spec.wire:
            database = tmp_path / f"{domain}-service" / f"{domain}-service.db"
            database.parent.mkdir(exist_ok=True)
            services[domain] = {"mode": "wire", "database_url": f"sqlite:///{database}"}
        if topology_spec.email_extracted:
            port = free_port()
            email = {"mode": "extracted", "url": f"http://127.0.0.1:{port}", "port": port}
            worker_dir = tmp_path / "email-worker"
            worker_dir.mkdir()
            worker_config = make_config(
                worker_dir,
                services={
                    "email": {**email, "database_url": f"sqlite:///{worker_dir}/email-service.db"}
                },
                **extra,
            )
            stoppers.append(ThreadedEmailWorker(worker_config))
            services["email"] = email
        yield make_config(tmp_path, services=services, **extra)
    finally:
        for stopper in reversed(stoppers):
            stopper.stop()
        if broker:
            broker.delete()
