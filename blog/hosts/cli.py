"""``flask --app blog hosts up|down|status|set``: the hosts lab from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from blog.config import ConfigError
from blog.domains import HTTP_SERVICES
from blog.hosts.lab import HostsLab, default_state_dir
from blog.hosts.netns import HostsError
from blog.hosts.plan import MONOLITH_PORT, plan_hosts
from blog.supervisor import parse_scale
from blog.web.context import config as current_config

LAB_OPTION = click.option(
    "--lab",
    default="hosts",
    show_default=True,
    help="The lab's name: it prefixes its namespaces (sb-<lab>-<host>).",
)
STATE_OPTION = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the lab keeps its state file, config and logs [instance/hosts/<lab>].",
)


def _link_options(command: Any) -> Any:
    for option in reversed(
        [
            click.option("--rtt-ms", type=click.FloatRange(min=0), help="Round-trip time."),
            click.option("--jitter-ms", type=click.FloatRange(min=0), help="At most the RTT."),
            click.option(
                "--bandwidth-mbit", type=click.FloatRange(min=0, min_open=True), help="Per way."
            ),
            click.option(
                "--loss-percent",
                type=click.FloatRange(min=0, max=100, max_open=True),
                help="Packets dropped at random, per way.",
            ),
        ]
    ):
        command = option(command)
    return command


def _overrides(**given: float | None) -> dict[str, float | None]:
    return {key: value for key, value in given.items() if value is not None}


def _lab(lab: str, state_dir: Path | None) -> HostsLab:
    return HostsLab(state_dir or default_state_dir(lab), say=click.echo)


hosts = AppGroup(
    "hosts",
    help="Each process on a host of its own: network namespaces on a bridge, with real "
    "distance between them (needs root).",
)
"""An ``AppGroup``: its commands run inside the app's context, to read the app's config."""


@hosts.command("up")
@_link_options
@click.option(
    "--scale",
    "scale",
    multiple=True,
    metavar="DOMAIN=N",
    help="N instances (hosts) of DOMAIN (repeatable): images=3",
)
@click.option(
    "--port",
    default=MONOLITH_PORT,
    show_default=True,
    help="The monolith, for this machine: 127.0.0.1:PORT.",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), help="Processes per server [server.workers]."
)
@LAB_OPTION
@STATE_OPTION
def up(
    rtt_ms: float | None,
    jitter_ms: float | None,
    bandwidth_mbit: float | None,
    loss_percent: float | None,
    scale: tuple[str, ...],
    port: int,
    workers: int | None,
    lab: str,
    state_dir: Path | None,
) -> None:
    """Start the monolith, every `mode: http` service instance and the email worker (when
    extracted) each in its own network namespace, joined by a bridge, with a delay proxy in
    front of each service host; the monolith answers on 127.0.0.1:PORT. Returns once all are
    healthy; `hosts down` removes everything."""
    cfg = current_config()
    overrides = _overrides(
        rtt_ms=rtt_ms, jitter_ms=jitter_ms, bandwidth_mbit=bandwidth_mbit, loss_percent=loss_percent
    )
    try:
        wanted = [d for d in HTTP_SERVICES if cfg.mode(d) == "http"]
        plan = plan_hosts(
            cfg,
            lab=lab,
            scale=parse_scale(scale, wanted),
            link_overrides=overrides,
            expose_port=port,
        )
        for link in [h.link for h in plan.services() if h.link is not None]:
            if link.jitter_ms > link.rtt_ms:
                raise ConfigError("--jitter-ms: at most the RTT (--rtt-ms)")
        for note in plan.notes:
            click.echo(f"note: {note}")
        hosts_lab = _lab(lab, state_dir)
        hosts_lab.up(plan, workers=workers)
    except (HostsError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("")
    for line in hosts_lab.status()[1:]:
        click.echo(line)
    click.echo(
        f"\nThe monolith: http://127.0.0.1:{port}  (the README's walkthrough works as it is)\n"
        f"Logs: {hosts_lab.state_dir / 'logs'}\n"
        "Change the distance: flask --app blog hosts set --rtt-ms 10 [--domain images]\n"
        "Stop and remove everything: flask --app blog hosts down"
    )


@hosts.command("down")
@LAB_OPTION
@STATE_OPTION
def down(lab: str, state_dir: Path | None) -> None:
    """Stop the lab's processes and remove its namespaces, veths, bridge, qdiscs and nftables
    tables: what its state file lists, nothing else."""
    hosts_lab = _lab(lab, state_dir)
    if not hosts_lab.exists:
        click.echo(f"no lab recorded in {hosts_lab.state_file}: nothing to remove")
        return
    try:
        removed = hosts_lab.down()
    except HostsError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in removed:
        click.echo(f"removed {line}")


@hosts.command("status")
@LAB_OPTION
@STATE_OPTION
def status(lab: str, state_dir: Path | None) -> None:
    """The lab's hosts, addresses, links and processes."""
    for line in _lab(lab, state_dir).status():
        click.echo(line)


@hosts.command("set")
@_link_options
@click.option(
    "--domain",
    "domains",
    multiple=True,
    type=click.Choice([*HTTP_SERVICES, "email"]),
    help="Only this domain's hosts (repeatable); default: every link.",
)
@LAB_OPTION
@STATE_OPTION
def set_links(
    rtt_ms: float | None,
    jitter_ms: float | None,
    bandwidth_mbit: float | None,
    loss_percent: float | None,
    domains: tuple[str, ...],
    lab: str,
    state_dir: Path | None,
) -> None:
    """Change the links of the running lab, at once (no restart)."""
    overrides = _overrides(
        rtt_ms=rtt_ms, jitter_ms=jitter_ms, bandwidth_mbit=bandwidth_mbit, loss_percent=loss_percent
    )
    if not overrides:
        raise click.UsageError("nothing to change: give --rtt-ms, --jitter-ms, ...")
    try:
        for line in _lab(lab, state_dir).set_links(overrides, list(domains) or None):
            click.echo(line)
    except HostsError as exc:
        raise click.ClickException(str(exc)) from exc
