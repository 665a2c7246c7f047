"""The lab's server processes, all ``blog.serving.ServerProcess``: the extracted services, the
monolith under gunicorn, and the floor servers.

Every one of them is killed, not stopped, when its ``ExitStack`` closes: the lab's data is
throw-away, and a graceful stop would wait for the event-feed pullers' long polls (up to 10 s)
that a gthread worker lets finish.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

from blog.config import Config
from blog.serving import ServerProcess, free_port, monolith_process, service_process
from lab.configs import monolith_overrides, service_settings, write_config
from lab.cpus import cpu_list
from lab.procstat import process_tree

FloorKind = Literal["socket", "gunicorn", "flask"]
FLOOR_KINDS: tuple[FloorKind, ...] = ("socket", "gunicorn", "flask")
"""From the thinnest server up: the loopback round trip, + gunicorn, + Flask."""
FLOOR_TARGETS: dict[FloorKind, str] = {
    "gunicorn": "lab.floor_servers:app",
    "flask": "lab.floor_servers:flask_app()",
}


def lab_service(
    domain: str, base: Config, state: Path, cpus: set[int] | None = None
) -> ServerProcess:
    """``domain``'s extracted service, one gunicorn worker, its own port and database, the
    configured cost settings; not started."""
    config_path = write_config(
        state / f"{domain}-service.yaml", service_settings(base, domain, state)
    )
    return service_process(
        domain,
        name=f"{domain} service",
        config_path=config_path,
        workers=1,
        cpus=cpu_list(cpus),
        output=state / f"{domain}-service.log",
    )


def start_services(
    domains: Sequence[str],
    base: Config,
    state: Path,
    stack: ExitStack,
    cpus: set[int] | None = None,
) -> dict[str, ServerProcess]:
    """Each domain's service (see :func:`lab_service`) under ``state/<domain>-service``, started
    side by side and killed when ``stack`` closes."""
    services = {
        domain: lab_service(domain, base, state / f"{domain}-service", cpus) for domain in domains
    }
    for service in services.values():
        stack.callback(service.kill)
    with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
        list(pool.map(lambda service: service.start(), services.values()))
    return services


def start_monolith(
    base: Config,
    state: Path,
    services: Mapping[str, str],
    stack: ExitStack,
    *,
    workers: int = 2,
    cpus: str | None = None,
) -> ServerProcess:
    """``gunicorn 'blog:create_app()'`` with ``workers`` gthread workers, pinned to ``cpus``,
    calling the extracted ``services`` (domain → URL), with a config file of its own (the
    user's, with the lab's overrides); started once every worker runs, killed when ``stack``
    closes."""
    config_path = write_config(
        state / "monolith.yaml",
        monolith_overrides(base, state / "state", services),
        over=base.source,
    )
    monolith = monolith_process(
        config_path=config_path, workers=workers, cpus=cpus, output=state / "monolith.log"
    )
    stack.callback(monolith.kill)

    def every_worker_forked() -> bool:
        """The master forks its workers one by one after binding: the first may answer while
        the last is still starting, and the lab measures them all."""
        return monolith.pid is not None and len(process_tree(monolith.pid)) > workers

    return monolith.start(ready=every_worker_forked)


def floor_server(kind: FloorKind, cpus: str | None = None) -> ServerProcess:
    """One of the floor's servers (see ``lab.floor_servers``), answering ``GET /ping``; not
    started."""
    if kind == "socket":
        port = free_port()
        command = [sys.executable, "-m", "lab.floor_servers", str(port)]
        return ServerProcess(
            command, port=port, name="socket floor", cpus=cpus, health_path="/ping"
        )
    return ServerProcess(
        FLOOR_TARGETS[kind], name=f"{kind} floor", workers=1, cpus=cpus, health_path="/ping"
    )
