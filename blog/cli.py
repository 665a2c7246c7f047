"""``flask --app blog <command>``: operational commands of the monolith.

``extract``/``inline`` replay one strangler step on real data (the data moves with the flag, see
``blog.migrate``); ``services`` runs every extracted service the config file switched on.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import FrameType

import click
from flask import Flask, current_app
from sqlalchemy import Engine, Table
from sqlalchemy.exc import SQLAlchemyError

from blog.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, Config, ConfigError
from blog.db import make_engine
from blog.domains import HTTP_SERVICES, NAMES, manifest
from blog.migrate import (
    MigrationError,
    MoveReport,
    check_config_editable,
    deliver_pending,
    feed_position,
    move_domain,
    outbox_end,
    set_feed_position,
    set_service_mode,
)
from blog.serving import ServerProcess, monolith_process, service_process
from blog.web.context import config as current_config
from blog.web.context import domains
from blog.wiring import Monolith

SHUTDOWN_GRACE_SECONDS = 15.0
"""gunicorn's graceful_timeout (10 s) plus slack; after that a service is killed."""

DOMAIN_ARGUMENT = click.Choice(NAMES)


def _runtime() -> Monolith:
    runtime: Monolith = current_app.extensions["blog.runtime"]
    return runtime


def register(app: Flask) -> None:
    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the tables of every domain that runs in-process (a server does this too when
        it starts serving)."""
        _runtime().init_db()
        click.echo(f"database ready: {current_config().database_url}")

    @app.cli.command("reconcile-payments")
    @click.option("--older-than", default=60, show_default=True, help="seconds")
    def reconcile_payments(older_than: int) -> None:
        """Settle payments left pending by a crash between the provider call and the commit."""
        _runtime().init_db()
        settled = domains().payments.reconcile_pending(older_than_seconds=older_than)
        click.echo(f"settled {settled} pending payment(s)")

    @app.cli.command("extract")
    @click.argument("domain", type=DOMAIN_ARGUMENT)
    def extract(domain: str) -> None:
        """Move DOMAIN's data to its service's database and set its mode to http.

        Stop the monolith's server first: rows it writes meanwhile would stay behind.
        """
        _move(domain, to_service=True)

    @app.cli.command("inline")
    @click.argument("domain", type=DOMAIN_ARGUMENT)
    def inline(domain: str) -> None:
        """Bring DOMAIN's data (and its undelivered events) back and set its mode to inprocess.

        Stop the DOMAIN service first: rows it writes meanwhile would stay behind.
        """
        _move(domain, to_service=False)

    @app.cli.command("services")
    def services() -> None:
        """Run every service the config marks `mode: http` under gunicorn, until Ctrl-C."""
        code = run_services(current_config())
        if code:
            click.get_current_context().exit(code)

    @app.cli.command("serve")
    @click.option("--port", default=5000, show_default=True, envvar="FLASK_RUN_PORT")
    def serve(port: int) -> None:
        """Serve the monolith under the production server config.yaml names (server.name:
        granian by default) on 127.0.0.1:PORT, until Ctrl-C; `flask run` is the development
        server."""
        code = run_monolith(current_config(), port)
        if code:
            click.get_current_context().exit(code)

    @app.cli.command("relay")
    def relay() -> None:
        """Relay the in-process domains' outboxes to RabbitMQ without serving HTTP, until Ctrl-C.

        Each outbox is relayed by one process at a time (a file lock elects it): started beside
        a running monolith, this one waits as a standby and takes over if the monolith dies.
        """
        from blog.broker import SingleRelay

        runtime = _runtime()
        if current_config().events.broker != "rabbitmq":
            raise click.UsageError("relay is for events.broker: rabbitmq (inline needs no relay)")
        relays = [job for kind, job in runtime.jobs if isinstance(job, SingleRelay)]
        names = ", ".join(r.relay.table.name for r in relays) or "none (all extracted)"
        click.echo(f"relaying outboxes: {names}; Ctrl-C to stop")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        runtime.start(kinds=("relay",))
        while not stop.wait(5):
            for leader in relays:
                click.echo(
                    f"{leader.relay.table.name}: "
                    f"{'relaying' if leader.leading else 'standby'}, "
                    f"{leader.relay.pending() if leader.leading else '?'} pending"
                )
        runtime.close()


# --------------------------------------------------------------------------- extract / inline


def _move(domain: str, *, to_service: bool) -> None:
    cfg, built = current_config(), domains()
    verb, new_mode = ("extract", "http") if to_service else ("inline", "inprocess")
    if domain not in HTTP_SERVICES:
        raise click.UsageError(
            "email is not extracted by moving tables: it becomes a RabbitMQ consumer "
            "(services.email.mode: extracted with events.broker: rabbitmq) and keeps its own "
            "tables"
        )
    if cfg.mode(domain) == new_mode:
        raise click.ClickException(
            f"{domain} is already {new_mode!r} in {cfg.source}: nothing to {verb}"
        )
    if cfg.events.broker != "inline":
        raise click.ClickException(f"{verb} needs events.broker: inline")
    bus = built.bus

    _runtime().init_db()
    declared = manifest(domain)
    metadata = declared.metadata()
    outbox = declared.outbox()
    skip = [outbox.name] if outbox is not None else []
    feed_source = f"{domain}-service"
    monolith_engine = _runtime().engine
    assert monolith_engine is not None
    service = make_engine(cfg.service_database_url(domain))
    delivered = 0
    rewound: tuple[int, int] | None = None
    try:
        check_config_editable(cfg.source)
        if to_service:
            report = move_domain(metadata, monolith_engine, service, skip=skip)
        else:
            if outbox is not None:
                # Events the service committed but the monolith never pulled: deliver them now,
                # or e.g. the "your post is published" email of the last post is never sent.
                delivered = deliver_pending(
                    service, outbox, monolith_engine, feed_source, bus.deliver
                )
            report = move_domain(metadata, service, monolith_engine, skip=skip)
        left = [(t.table, t.left_behind) for t in report.tables if t.left_behind]
        if left:
            _print_report(domain, report)
            raise click.ClickException(
                "rows were written to the source while the move ran and stayed there ("
                + ", ".join(f"{table}: {n}" for table, n in left)
                + f"); the mode is unchanged. Stop whatever writes to it and run {verb} again."
            )
        if to_service and outbox is not None:
            rewound = _align_feed_cursor(monolith_engine, service, outbox, feed_source)
        set_service_mode(cfg.source, domain, new_mode)
    except (MigrationError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        service.dispose()

    _print_report(domain, report)
    if delivered:
        click.echo(
            f"Delivered {delivered} event(s) from the {domain} service's outbox that the "
            "monolith had not pulled yet."
        )
    if rewound:
        click.echo(
            f"The monolith's feed cursor for {feed_source} was at {rewound[0]}, past the end of "
            f"the service's outbox ({rewound[1]}): moved back so no new event is skipped."
        )
    _print_next_steps(cfg, domain, new_mode)


def _print_next_steps(cfg: Config, domain: str, new_mode: str) -> None:
    if domain == "images":
        where = (
            cfg.images.local_dir
            if cfg.images.storage == "local"
            else f"s3://{cfg.images.s3.bucket}/{cfg.images.s3.prefix}"
        )
        click.echo(f"Image files stay in {where}: both modes use it; only the table moved.")
    svc = cfg.services[domain]
    click.echo(f"{cfg.source}: services.{domain}.mode is now {new_mode}")
    env = "" if Path(cfg.source) == DEFAULT_CONFIG_PATH else f"BLOG_CONFIG={cfg.source} "
    click.echo("\nNext:")
    if new_mode == "http":
        click.echo(
            f"  start the service:     {env}make services\n"
            f"                    (or: {env}flask --app extracted.{domain} run -p {svc.port})"
        )
        click.echo(f"  restart the monolith:  {env}make run   (it now calls {svc.url})")
    else:
        click.echo(f"  stop the {domain} service: it owns no data any more")
        click.echo(f"  restart the monolith:  {env}make run   (it now runs {domain} in-process)")


def _align_feed_cursor(
    monolith: Engine, service: Engine, outbox: Table, feed_source: str
) -> tuple[int, int] | None:
    """A service database started afresh numbers its outbox from 1 again; a cursor left further
    on by an earlier extraction would then skip every new event until it caught up."""
    end = outbox_end(service, outbox)
    position = feed_position(monolith, feed_source)
    if position <= end:
        return None
    set_feed_position(monolith, feed_source, end)
    return position, end


def _print_report(domain: str, report: MoveReport) -> None:
    click.echo(f"Moved the {domain} data from {report.source}")
    click.echo(f"{'to':>{len(domain) + 18}} {report.target}")
    width = max([len("table"), *(len(t.table) for t in report.tables)])
    click.echo(f"  {'table':<{width}}  copied  already there  removed from source")
    for t in report.tables:
        click.echo(f"  {t.table:<{width}}  {t.copied:>6}  {t.already_there:>13}  {t.deleted:>18}")
    for name in report.not_moved:
        click.echo(f"  {name} stays: events belong to the database that wrote them")


# --------------------------------------------------------------------------- services


def run_services(cfg: Config) -> int:
    """Start, under gunicorn, every service ``cfg`` marks ``http``; stop them all on SIGINT or
    SIGTERM. Returns the exit status: 0 after a requested stop, 1 when a service died."""
    wanted = [domain for domain in HTTP_SERVICES if cfg.mode(domain) == "http"]
    if not wanted:
        click.echo(
            f"No service is in http mode in {cfg.source}: nothing to start.\n"
            "Extract one first: flask --app blog extract <domain>"
        )
        return 0
    ports: dict[str, int] = {}
    for domain in wanted:
        port = cfg.services[domain].port
        if port is None:
            raise click.ClickException(f"services.{domain}.port: needed to start the service")
        if not (PROJECT_ROOT / "extracted" / domain / "wsgi.py").is_file():
            raise click.ClickException(f"extracted/{domain}/wsgi.py is missing: no service yet")
        ports[domain] = port
    config_path = _config_file(cfg)
    return _Supervisor(
        {
            domain: functools.partial(service_process, domain, port=port, config_path=config_path)
            for domain, port in ports.items()
        }
    ).run()


def run_monolith(cfg: Config, port: int) -> int:
    """Serve the monolith under the configured server (``server.name``), until Ctrl-C."""
    return _Supervisor(
        {"monolith": functools.partial(monolith_process, port=port, config_path=_config_file(cfg))}
    ).run()


def _config_file(cfg: Config) -> Path | None:
    """Every server reads the very file this process read (none: config.yaml's defaults)."""
    source = Path(cfg.source)
    return source if source.is_file() else None


class _Supervisor:
    """Runs servers as child processes and relays their output, one prefix per server.

    The children stay in this process's group: a Ctrl-C in the terminal reaches them too, and
    whoever kills the group kills them all. SIGTERM from elsewhere is passed on to each of them.
    """

    def __init__(self, servers: Mapping[str, Callable[..., ServerProcess]]) -> None:
        self._width = max(len(name) for name in servers)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._servers = {
            name: make(
                output=functools.partial(self._say, name),
                own_group=False,
                stop_signal=signal.SIGTERM,  # every server's graceful stop
            )
            for name, make in servers.items()
        }

    def _say(self, name: str, line: str) -> None:
        with self._lock:
            click.echo(f"{name:<{self._width}} | {line}")

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def run(self) -> int:
        # Handlers first: a signal that arrives while the children start must not kill this
        # process and leave them running without anyone to stop them.
        watched = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in watched}
        status = 0
        started: dict[str, ServerProcess] = {}
        try:
            for name, server in self._servers.items():
                if self._stop.is_set():
                    break
                try:
                    server.spawn()
                except (ConfigError, SQLAlchemyError, OSError) as exc:
                    # Its tables could not be prepared, or it could not be run: nothing started.
                    self._say(name, f"cannot start: {exc}; stopping the others")
                    status = 1
                    break
                started[name] = server
                self._say(name, f"starting on {server.url} (pid {server.pid})")
            if status == 0 and not self._stop.is_set():
                click.echo(f"{len(started)} server(s) starting; Ctrl-C stops them.")
            waiting = dict(started)  # not healthy yet
            while status == 0 and not self._stop.wait(0.2):
                dead = [(n, s.returncode) for n, s in started.items() if not s.running]
                if dead:
                    for name, code in dead:
                        self._say(name, f"exited with status {code}; stopping the others")
                    status = 1
                    break
                for name, server in list(waiting.items()):
                    if server.healthy(timeout=0.5):
                        self._say(name, f"healthy: {server.url}{server.health_path}")
                        del waiting[name]
        finally:
            self._stop_all(started.values())
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        click.echo("all services stopped" if "monolith" not in started else "stopped")
        return status

    def _stop_all(self, servers: Iterable[ServerProcess]) -> None:
        """The graceful stop asked of every service at once, then waited for with one deadline;
        whatever is still there after it is killed."""
        servers = list(servers)
        for server in servers:
            server.terminate()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for server in servers:
            server.stop(timeout=deadline - time.monotonic())
