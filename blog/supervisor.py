"""``flask --app blog services`` (``make services``): every extracted service, each scaled to as
many instances as asked, supervised in the foreground.

The supervisor prefixes every line a server prints with its name, keeps the others running when
one instance dies (and says so), and takes commands on its standard input for experiments:
``stop images-2`` (graceful), ``kill images-2`` (a crash), ``start images-2``, ``status``. Ctrl-C
(or SIGTERM) stops them all.

Instance ``i`` of a domain listens on the domain's port plus ``i``: ``images`` ×3 is 3003, 3004,
3005. Each instance is told its own URL and name (``BLOG_INSTANCE_URL``, ``BLOG_INSTANCE_NAME``),
which it registers under when discovery is the registry.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

import click
from sqlalchemy.exc import SQLAlchemyError

from blog.config import Config, ConfigError
from blog.serving import HOST, ServerProcess

SHUTDOWN_GRACE_SECONDS = 15.0
"""The servers' graceful timeout (10 s) plus slack; after that a server is killed."""


@dataclass(frozen=True)
class Instance:
    name: str
    domain: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def plan_instances(cfg: Config, domains: Iterable[str], scale: Mapping[str, int]) -> list[Instance]:
    """Each domain's instances on consecutive ports from its own; refused when two would share a
    port (move a domain's ``services.<domain>.port`` out of the way)."""
    planned: list[Instance] = []
    for domain in domains:
        port = cfg.services[domain].port
        if port is None:
            raise ConfigError(f"services.{domain}.port: needed to start the service")
        count = scale.get(domain, 1)
        for i in range(count):
            name = domain if count == 1 else f"{domain}-{i + 1}"
            planned.append(Instance(name, domain, port + i))
    taken: dict[int, str] = {}
    for instance in planned:
        if instance.port in taken:
            raise ConfigError(
                f"{instance.name} and {taken[instance.port]} would both listen on port "
                f"{instance.port}: set services.{instance.domain}.port to a free range"
            )
        taken[instance.port] = instance.name
    return planned


def parse_scale(values: Iterable[str], domains: Iterable[str]) -> dict[str, int]:
    """``["images=3", "posts=2"]`` → ``{"images": 3, "posts": 2}``."""
    known = set(domains)
    scale: dict[str, int] = {}
    for value in values:
        domain, _, count = value.partition("=")
        if domain not in known or not count.isdigit() or not 1 <= int(count) <= 32:
            raise click.BadParameter(
                f"{value!r}: use <domain>=<1..32> for a service in http mode "
                f"({', '.join(sorted(known)) or 'none'})",
                param_hint="--scale",
            )
        scale[domain] = int(count)
    return scale


class Supervisor:
    """Runs servers as child processes, relays their output, and obeys stdin commands.

    The children stay in this process's group: a Ctrl-C in the terminal reaches them too, and
    whoever kills the group kills them all. SIGTERM from elsewhere is passed on to each of them.
    """

    def __init__(
        self,
        servers: Mapping[str, Callable[..., ServerProcess]],
        commands: TextIO | None = None,
    ) -> None:
        self._width = max(len(name) for name in servers)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._commands = commands
        self._servers = {
            name: make(
                output=functools.partial(self.say, name),
                own_group=False,
                stop_signal=signal.SIGTERM,  # every server's graceful stop
            )
            for name, make in servers.items()
        }
        self._listening = commands is not None  # until its end of file
        self._waiting: dict[str, ServerProcess] = {}  # started, not healthy yet
        self._reported: set[str] = set()  # deaths already told

    def say(self, name: str, line: str) -> None:
        with self._lock:
            click.echo(f"{name:<{self._width}} | {line}")

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def run(self) -> int:
        """Until Ctrl-C, SIGTERM, or every server gone; 0 after a requested stop."""
        # Handlers first: a signal that arrives while the children start must not kill this
        # process and leave them running without anyone to stop them.
        watched = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in watched}
        status = 0
        try:
            for name in self._servers:
                if self._stop.is_set() or not self._start(name):
                    status = 0 if self._stop.is_set() else 1
                    break
            if status == 0 and not self._stop.is_set():
                how = " Type 'status', 'stop <name>', 'kill <name>', 'start <name>'."
                click.echo(
                    f"{len(self._servers)} server(s) starting; Ctrl-C stops them."
                    + (how if self._commands is not None else "")
                )
                if self._commands is not None:
                    threading.Thread(target=self._read_commands, daemon=True).start()
                status = self._watch()
        finally:
            self._stop_all(self._servers.values())
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        click.echo("all services stopped" if "monolith" not in self._servers else "stopped")
        return status

    def _start(self, name: str) -> bool:
        server = self._servers[name]
        try:
            server.spawn()
        except (ConfigError, SQLAlchemyError, OSError) as exc:
            # Its tables could not be prepared, or it could not be run: nothing started.
            self.say(name, f"cannot start: {exc}")
            return False
        self._waiting[name] = server
        self._reported.discard(name)
        self.say(name, f"starting on {server.url} (pid {server.pid})")
        return True

    def _watch(self) -> int:
        while not self._stop.wait(0.2):
            for name, server in self._servers.items():
                if server.process is not None and not server.running and name not in self._reported:
                    self._reported.add(name)
                    self._waiting.pop(name, None)
                    others = sum(s.running for s in self._servers.values())
                    self.say(
                        name,
                        f"exited with status {server.returncode}; {others} other server(s) "
                        f"still running" + (f" ('start {name}' restarts it)" if others else ""),
                    )
            for name, server in list(self._waiting.items()):
                if server.healthy(timeout=0.5):
                    self.say(name, f"healthy: {server.url}{server.health_path}")
                    del self._waiting[name]
            if not any(s.running for s in self._servers.values()) and not self._listening:
                return 1  # nothing left to supervise, and nobody to start one again
        return 0

    def _read_commands(self) -> None:
        assert self._commands is not None
        for raw in self._commands:
            if self._stop.is_set():
                return
            self.command(raw.strip())
        self._listening = False

    def command(self, line: str) -> None:
        """One stdin command: ``status``, or ``stop|kill|start <name>``."""
        verb, _, name = line.partition(" ")
        if not verb:
            return
        if verb == "status":
            for each, each_server in self._servers.items():
                state = f"running (pid {each_server.pid})" if each_server.running else "stopped"
                self.say(each, f"{state} on {each_server.url}")
            return
        name = name.strip()
        server = self._servers.get(name)
        if verb not in ("stop", "kill", "start") or server is None:
            click.echo(
                f"? {line!r}: status | stop <name> | kill <name> | start <name>; names: "
                + ", ".join(self._servers)
            )
            return
        if verb == "start":
            if server.running:
                self.say(name, "already running")
            else:
                self._start(name)
            return
        if not server.running:
            self.say(name, "not running")
            return
        self._reported.add(name)  # asked for: no "exited" surprise
        if verb == "kill":
            self.say(name, f"killed (SIGKILL to pid {server.pid})")
            server.kill()
        else:
            self.say(name, "stopping gracefully")
            server.stop(timeout=SHUTDOWN_GRACE_SECONDS)
            self.say(name, "stopped")

    def _stop_all(self, servers: Iterable[ServerProcess]) -> None:
        """The graceful stop asked of every server at once, then waited for with one deadline;
        whatever is still there after it is killed."""
        servers = list(servers)
        for server in servers:
            server.terminate()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for server in servers:
            server.stop(timeout=deadline - time.monotonic())


def interactive_stdin() -> TextIO | None:
    """Standard input, when a person (or a pipe) can type commands into it."""
    return None if sys.stdin is None or sys.stdin.closed else sys.stdin
