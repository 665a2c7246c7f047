"""The public API suite runs once per topology: the monolith, each domain extracted alone and all
four at once over the in-process wire (the service's real app and the real client, without a
socket), all four over real sockets, and the same over RabbitMQ (email in-process, email extracted
as a worker, everything extracted); as root, all four on hosts (network namespaces) of their own,
2 ms from the monolith's (``hosts``). Extraction must change what a call costs, never what it
does."""

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
    hosts: bool = False
    """Each HTTP service on a host (network namespace) of its own, behind a delay proxy at
    ``HOSTS_RTT_MS``, and the monolith's calls made from a host of its own (root only)."""


TOPOLOGIES: dict[str, Topology] = {
    "monolith": Topology(),
    **{f"{domain}-wire": Topology(wire=(domain,)) for domain in HTTP_DOMAINS},
    "all-wire": Topology(wire=HTTP_DOMAINS),
    "all-http": Topology(http=HTTP_DOMAINS),
    "rabbitmq": Topology(rabbitmq=True),
    "rabbitmq-email-worker": Topology(rabbitmq=True, email_extracted=True),
    "rabbitmq-all-extracted": Topology(http=HTTP_DOMAINS, rabbitmq=True, email_extracted=True),
    "hosts": Topology(http=HTTP_DOMAINS, hosts=True),
}
HOSTS_RTT_MS = 2.0


@pytest.fixture(scope="session")
def hosts_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The hosts topology's network, built once per run (namespaces, bridge, one delay proxy
    per service host) and removed at the end, failed or not. Each test then puts its own
    services' sockets in it (fresh databases, as in every topology)."""
    from blog.hosts.lab import HostsLab
    from tests.hostslab import api_plan, lab_name, require_hosts

    require_hosts(("ip",))  # namespaces and veths only: no shaping here
    plan = api_plan(lab_name(), HOSTS_RTT_MS)
    lab = HostsLab(tmp_path_factory.mktemp("hosts"))
    lab.create(plan)
    try:
        for host in plan.services():
            lab.start_proxy(host)
        yield plan
    finally:
        lab.down()


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
def config(
    tmp_path: Path, topology_spec: Topology, request: pytest.FixtureRequest
) -> Iterator[Config]:
    if topology_spec.hosts:
        yield from _hosts_config(tmp_path, request.getfixturevalue("hosts_network"))
        return
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


def _hosts_config(tmp_path: Path, plan: Any) -> Iterator[Config]:
    """Every HTTP service in a thread of this process with its listening socket in its own host
    (behind the host's delay proxy), and this thread, which builds and calls the in-process
    monolith, in the monolith's host for the test: every call crosses the bridge and pays the
    RTT, and no lab address is ever dialled from the root namespace."""
    from blog.hosts.netns import enter, leave
    from tests.hostslab import NamespacedService

    servers: list[Any] = []
    previous = None
    try:
        for host in plan.services():
            servers.append(NamespacedService(host.domain, host, tmp_path / f"{host.name}-service"))
        services = {
            s_host.domain: {"mode": "http", "url": s_host.url} for s_host in plan.services()
        }
        previous = enter(plan.monolith.namespace)
        yield make_config(tmp_path, services=services)
    finally:
        if previous is not None:
            leave(previous)
        for server in reversed(servers):
            server.stop()
