"""A topology running for real: its extracted services and the monolith under the production
server, all pinned to the server CPUs, and a seeded blog to ask for pages."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blog.config import Config
from blog.serving import ServerProcess
from lab import procstat
from lab.keepalive import KeepAlive
from lab.processes import start_monolith, start_services
from lab.topology import Topology

PASSWORD = "correct horse battery"
SEED_POSTS = 25  # more than a page (per_page_default 20): the post list always reads a full page
SEED_COMMENTS = 5


@dataclass(frozen=True)
class Running:
    """A started topology: the monolith, its services, and each process group's pids (a
    server's master and workers), which is what CPU and memory are summed over."""

    topology: Topology
    monolith: ServerProcess
    services: dict[str, ServerProcess]
    groups: dict[str, list[int]]

    @property
    def pids(self) -> list[int]:
        return [pid for pids in self.groups.values() for pid in pids]

    def placement(self) -> dict[str, list[str]]:
        """The CPUs each group may run on, read back from /proc."""
        return {
            group: sorted({procstat.cpus_allowed(p) for p in pids})
            for group, pids in self.groups.items()
        }


def start_topology(
    topology: Topology,
    base: Config,
    state: Path,
    stack: ExitStack,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
    service_cpus: Mapping[str, set[int]] | None = None,
) -> Running:
    """The topology's extracted services (each on ``service_cpus[domain]`` or the server CPUs)
    and the monolith calling them, with the configured server and worker count (as
    ``make serve`` runs it); all killed with ``stack``."""
    services: dict[str, ServerProcess] = {}
    for domain in topology.extracted:
        cpus = (service_cpus or {}).get(domain, server_cpus)
        services.update(start_services([domain], base, state / "services", stack, cpus=cpus))
    monolith = start_monolith(
        base,
        state / "monolith",
        {d: s.url for d, s in services.items()},
        stack,
        cpus=server_cpus_spec,
    )
    groups = {}
    for group, server in {"monolith": monolith, **services}.items():
        assert server.pid is not None
        groups[group] = procstat.process_tree(server.pid)
    return Running(topology, monolith, services, groups)


def seed_http(client: KeepAlive, prefix: str = "seed") -> dict[str, Any]:
    """A member (at the configured bcrypt cost), a full page of posts, and one post with
    comments (``detail``: the post page) and another to comment on (so that page stays put)."""
    email = f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"
    client.json(
        "POST", "/api/register", {"email": email, "name": "Seed", "password": PASSWORD}, expect=201
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
        for n in range(SEED_POSTS)
    ]
    for n in range(SEED_COMMENTS):
        client.json("POST", f"/api/posts/{ids[0]}/comments", {"body": f"c{n}"}, headers, expect=201)
    return {"headers": headers, "detail": ids[0], "commented": ids[1]}
