"""``flask --app blog <command>``: operational commands of the monolith.

``extract``/``inline`` replay one strangler step on real data (the data moves with the flag, see
``blog.migrate``); ``services`` runs every extracted service the config file switched on.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import Engine, Table

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
from blog.serving import monolith_process, service_process
from blog.supervisor import Supervisor, interactive_stdin, parse_scale, plan_instances
from blog.web.context import config as current_config
from blog.web.context import domains
from blog.wiring import Monolith

DOMAIN_ARGUMENT = click.Choice(NAMES)


def _runtime() -> Monolith:
    runtime: Monolith = current_app.extensions["blog.runtime"]
    return runtime


def register(app: Flask) -> None:
    from blog.hosts.cli import hosts

    app.cli.add_command(hosts)  # hosts up|down|status|set: the network lab (blog/hosts)

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
    @click.option(
        "--scale",
        "scale",
        multiple=True,
        metavar="DOMAIN=N",
        help="Run N instances of DOMAIN on consecutive ports (repeatable): images=3",
    )
    def services(scale: tuple[str, ...]) -> None:
        """Run every service the config marks `mode: http`, until Ctrl-C; type `status`,
        `stop <name>`, `kill <name>` or `start <name>` to play with one instance."""
        cfg = current_config()
        wanted = [d for d in HTTP_SERVICES if cfg.mode(d) == "http"]
        code = run_services(cfg, parse_scale(scale, wanted))
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


def run_services(cfg: Config, scale: Mapping[str, int] | None = None) -> int:
    """Start every instance of every service ``cfg`` marks ``http`` under the configured server
    (``scale``: instances per domain); supervise them until Ctrl-C or SIGTERM. Returns the exit
    status: 0 after a requested stop, 1 when nothing could run."""
    wanted = [domain for domain in HTTP_SERVICES if cfg.mode(domain) == "http"]
    if not wanted:
        click.echo(
            f"No service is in http mode in {cfg.source}: nothing to start.\n"
            "Extract one first: flask --app blog extract <domain>"
        )
        return 0
    try:
        instances = plan_instances(cfg, wanted, scale or {})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    for domain in wanted:
        if not (PROJECT_ROOT / "extracted" / domain / "wsgi.py").is_file():
            raise click.ClickException(f"extracted/{domain}/wsgi.py is missing: no service yet")
    scaled = sorted({i.domain for i in instances if i.name != i.domain})
    if scaled and cfg.discovery.kind == "static":
        click.echo(
            f"{', '.join(scaled)}: several instances, and discovery.kind is static: the monolith "
            "calls only the URLs config.yaml lists (services.<domain>.urls). With "
            "discovery.kind: registry (make registry) every instance registers itself."
        )
    config_path = _config_file(cfg)
    return Supervisor(
        {
            i.name: functools.partial(
                service_process,
                i.domain,
                name=i.name,
                port=i.port,
                config_path=config_path,
                env={"BLOG_INSTANCE_URL": i.url, "BLOG_INSTANCE_NAME": i.name},
            )
            for i in instances
        },
        commands=interactive_stdin(),
    ).run()


def run_monolith(cfg: Config, port: int) -> int:
    """Serve the monolith under the configured server (``server.name``), until Ctrl-C."""
    return Supervisor(
        {"monolith": functools.partial(monolith_process, port=port, config_path=_config_file(cfg))}
    ).run()


def _config_file(cfg: Config) -> Path | None:
    """Every server reads the very file this process read (none: config.yaml's defaults)."""
    source = Path(cfg.source)
    return source if source.is_file() else None
