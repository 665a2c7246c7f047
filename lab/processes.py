"""The lab's server processes, all ``blog.serving.ServerProcess``: the extracted services, the
monolith under the production server, the lean baseline, and the ladder's floor servers.

Every one of them is killed, not stopped, when its ``ExitStack`` closes: the lab's data is
throw-away, and a graceful stop would wait for the event-feed pullers' long polls in flight.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Literal, get_args

from blog.config import Config, ServerConfig
from blog.serving import ServerProcess, free_port, monolith_process, service_process
from lab.configs import monolith_overrides, service_settings, write_config
from lab.cpus import cpu_list
from lab.lean_app import HEALTH_PATH as LEAN_HEALTH_PATH
from lab.procstat import process_tree

ServerName = Literal["granian", "waitress", "gunicorn"]
SERVERS: tuple[ServerName, ...] = get_args(ServerName)
"""Every server ``blog.serving`` can run, measured side by side in the ladder."""

FloorKind = Literal["socket", "wsgi", "flask", "falcon"]
FLOOR_TARGETS: dict[FloorKind, str] = {
    "wsgi": "lab.floor_servers:app",
    "flask": "lab.floor_flask:app",
    "falcon": "lab.floor_falcon:app",
}
"""The ladder's rungs below a service: a bare WSGI function, a bare Flask app (the gateway's
framework), a bare Falcon app (the services')."""
FRAMEWORKS: tuple[FloorKind, ...] = ("flask", "falcon")
LEAN_TARGET = "lab.lean_wsgi:app"


def worker_count(server: ServerConfig, workers: int | None = None) -> int:
    """The processes ``server`` can run ``workers`` (default: the configured count) with:
    waitress serves from one process with threads, whatever is asked."""
    return 1 if server.name == "waitress" else (workers or server.workers)


def processes_when_ready(server: ServerConfig, workers: int) -> int:
    """How many processes a started server runs: a master and its workers, except waitress,
    whose one process serves with threads."""
    return 1 if server.name == "waitress" else workers + 1


def _start_all_workers(process: ServerProcess, server: ServerConfig, workers: int) -> None:
    """Start ``process`` and return once every worker runs: the master forks (or spawns) them
    one by one after binding, so the first may answer while the last still starts, and the lab
    measures them all."""
    expected = processes_when_ready(server, workers)

    def every_worker_started() -> bool:
        return process.pid is not None and len(process_tree(process.pid)) >= expected

    process.start(ready=every_worker_started)


def lab_service(
    domain: str,
    base: Config,
    state: Path,
    cpus: set[int] | None = None,
    server: ServerConfig | None = None,
) -> ServerProcess:
    """``domain``'s extracted service, one worker, its own port and database, the configured
    cost settings, under the configured server (or ``server``); not started."""
    config_path = write_config(
        state / f"{domain}-service.yaml", service_settings(base, domain, state)
    )
    return service_process(
        domain,
        name=f"{domain} service" + (f" ({server.name})" if server else ""),
        config_path=config_path,
        workers=1,
        server=server,
        cpus=cpu_list(cpus),
        output=state / f"{domain}-service.log",
    )


def start_services(
    domains: Sequence[str],
    base: Config,
    state: Path,
    stack: ExitStack,
    cpus: set[int] | None = None,
    server: ServerConfig | None = None,
) -> dict[str, ServerProcess]:
    """Each domain's service (see :func:`lab_service`) under ``state/<domain>-service``, started
    side by side and killed when ``stack`` closes."""
    services = {
        domain: lab_service(domain, base, state / f"{domain}-service", cpus, server)
        for domain in domains
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
    workers: int | None = None,
    cpus: str | None = None,
) -> ServerProcess:
    """The monolith as ``make serve`` runs it (``blog.serving.monolith_process``: the target
    ``blog.wsgi:app`` under the server the config file's ``server:`` names) with ``workers``
    processes (default: the configured count), pinned to ``cpus``, calling the extracted
    ``services`` (domain → URL), with a config file of its own (the user's, with the lab's
    overrides); started once every worker runs, killed when ``stack`` closes."""
    config_path = write_config(
        state / "monolith.yaml",
        monolith_overrides(base, state / "state", services),
        over=base.source,
    )
    workers = worker_count(base.server, workers)
    monolith = monolith_process(
        config_path=config_path,
        server=base.server,
        workers=workers,
        cpus=cpus,
        output=state / "monolith.log",
    )
    stack.callback(monolith.kill)
    _start_all_workers(monolith, base.server, workers)
    return monolith


def start_lean(
    config_path: Path,
    server: ServerConfig,
    stack: ExitStack,
    *,
    workers: int,
    cpus: str | None = None,
    output: Path | None = None,
) -> ServerProcess:
    """The lean baseline (``lab.lean_app``) on the database of the config file ``config_path``
    (a lab monolith's: the same rows), under ``server`` with ``workers`` processes; killed when
    ``stack`` closes."""
    workers = worker_count(server, workers)
    lean = ServerProcess(
        LEAN_TARGET,
        name=f"lean baseline ({server.name})",
        config_path=config_path,
        server=server,
        workers=workers,
        cpus=cpus,
        output=output,
        health_path=LEAN_HEALTH_PATH,
    )
    stack.callback(lean.kill)
    _start_all_workers(lean, server, workers)
    return lean


def floor_server(
    kind: FloorKind, server: ServerName | None = None, cpus: str | None = None
) -> ServerProcess:
    """One of the ladder's servers answering ``GET /ping`` (see ``lab.floor_servers``): the
    socket server (F0), or ``server`` (one worker) with a bare WSGI function, a bare Flask app or
    a bare Falcon app; not started."""
    if kind == "socket":
        port = free_port()
        command = [sys.executable, "-m", "lab.floor_servers", str(port)]
        return ServerProcess(
            command, port=port, name="socket floor", cpus=cpus, health_path="/ping"
        )
    if server is None:
        raise ValueError(f"the {kind} floor needs a server: one of {', '.join(SERVERS)}")
    return ServerProcess(
        FLOOR_TARGETS[kind],
        name=f"{server} + {kind} floor",
        server=ServerConfig(name=server, workers=1),
        workers=1,
        cpus=cpus,
        health_path="/ping",
    )
