"""Server processes: the one launcher for everything that serves HTTP in a process of its own.

``flask --app blog services`` runs the extracted services with it; the tests and the latency lab
run the services, the monolith and the lab's floor servers with it. A server is a WSGI target
(``extracted.<domain>.wsgi:app``, ``blog:create_app()``) under gunicorn with the services' own
settings (``extracted/gunicorn.conf.py``: gthread workers, long keep-alive), on a loopback port,
reading the config file ``BLOG_CONFIG`` names; or, for a floor measurement, any other command
that listens on its port.

A server counts as started only once it answers ``GET /health`` (or another path) with 200, and
a server that fails to start is stopped before the error is raised: nothing is left running
behind a failed start.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Self

from blog.config import PROJECT_ROOT, SERVER_WORKERS_ENV, Config, ServerConfig, load_config

HOST = "127.0.0.1"
GUNICORN_CONF = PROJECT_ROOT / "extracted" / "gunicorn.conf.py"
MONOLITH_TARGET = "blog.wsgi:app"
GRACEFUL_SECONDS = 10
"""How long a stopping server lets requests in flight finish before it kills its workers."""
LOG_TAIL_LINES = 200
"""What a piped server's failure message shows of its output (a log file shows all of it)."""

Output = Path | Callable[[str], None] | None
"""Where a server's stdout and stderr go: appended to a file, line by line to a function (read
from a pipe), or nowhere."""

Prepare = Callable[[Config], None]
"""Work done in this process before the server starts, given the config the server will read."""


class ServerStartError(RuntimeError):
    """The server exited, or never answered its health check, before it was ready."""


def server_command(
    server: ServerConfig, target: str, port: int, workers: int | None = None, host: str = HOST
) -> list[str]:
    """The command line that serves the WSGI ``target`` on ``port`` with ``server``.

    Every server keeps connections alive (a hop without keep-alive pays a TCP handshake each
    time), stops gracefully on SIGTERM, and logs no access line of its own: the app logs each
    request itself, with its request id.
    """
    processes = workers if workers is not None else server.workers
    if server.name == "granian":
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(processes),
            "--blocking-threads",
            str(server.threads),
            "--http",
            "1",
            "--no-ws",
            "--no-access-log",
            "--workers-kill-timeout",
            str(GRACEFUL_SECONDS),
            target,
        ]
    if server.name == "waitress":
        # One process; its threads serve in parallel (config refuses workers > 1 for it).
        listen = f"--listen={host}:{port}"
        return [sys.executable, "-m", "waitress", listen, f"--threads={server.threads}", target]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONF),
        "-b",
        f"{host}:{port}",
        "--workers",
        str(processes),
        "--threads",
        str(server.threads),
        target,
    ]


def _descendants(root: int) -> list[int]:
    """Every process below ``root`` (Linux's /proc), children before grandchildren."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(frontier)
    return found


def service_target(domain: str) -> str:
    """The WSGI target of ``domain``'s extracted service."""
    return f"extracted.{domain}.wsgi:app"


def free_port() -> int:
    """A loopback port nothing listens on right now (the OS picks it; another process could
    still take it before the server binds it, which on a test machine is rare enough)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server process: start it, check its health, stop it gracefully or kill it.

    ``serve`` is a WSGI target run under gunicorn, or a whole command line that listens on
    ``port``. ``own_group`` puts the server in a process group of its own, so that stopping or
    killing it reaches its workers too, and a Ctrl-C in this terminal does not; without it the
    server shares this process's group (a supervisor's children: one Ctrl-C stops them all), and
    signals go to its main process only. Restartable: ``start()`` after ``kill()`` serves again on
    the same port.
    """

    def __init__(
        self,
        serve: str | Sequence[str],
        *,
        port: int | None = None,
        host: str = HOST,
        name: str | None = None,
        config_path: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        server: ServerConfig | None = None,
        cpus: str | None = None,
        output: Output = None,
        health_path: str = "/health",
        env: Mapping[str, str] | None = None,
        prepare: Prepare | None = None,
        own_group: bool = True,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        """``config_path`` becomes ``BLOG_CONFIG`` (None: the server reads config.yaml);
        ``server`` picks the server and its settings (None: the config file's ``server``);
        ``workers`` overrides its process count;
        ``cpus`` pins the server with ``taskset -c`` (``"1"``, ``"0,2"``, ``"2-3"``);
        ``stop_signal`` is what ``stop()`` sends first: SIGTERM is gunicorn's graceful stop
        (in-flight requests finish), SIGINT its quick one."""
        self.port = port if port is not None else free_port()
        self.host = host
        self.name = name or (serve if isinstance(serve, str) else Path(serve[0]).name)
        self.config_path = Path(config_path).resolve() if config_path is not None else None
        self.output = output
        self.health_path = health_path
        self.own_group = own_group
        self.stop_signal = stop_signal
        self._prepare = prepare
        self._extra_env: dict[str, str] = {}
        if isinstance(serve, str):
            if server is None:
                server = load_config(self.config_path).server
            argv = server_command(server, serve, self.port, workers, host)
            if workers is not None:
                self._extra_env[SERVER_WORKERS_ENV] = str(workers)  # the app's view agrees
        else:
            argv = list(serve)
        self.argv = ["taskset", "-c", cpus, *argv] if cpus else argv
        self.env = dict(os.environ)
        if self.config_path is None:
            self.env.pop("BLOG_CONFIG", None)
        else:
            self.env["BLOG_CONFIG"] = str(self.config_path)
        if callable(output):
            self.env["PYTHONUNBUFFERED"] = "1"  # each line reaches the pipe when it is written
        self.env.update(self._extra_env)
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._relay: threading.Thread | None = None
        self._signalled = False

    # ------------------------------------------------------------------ state

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (a signal: minus its number)."""
        return self.process.poll() if self.process is not None else None

    def log(self) -> str:
        """The server's output so far (a piped server's last lines only)."""
        if isinstance(self.output, Path):
            return self.output.read_text(errors="replace") if self.output.exists() else ""
        return "\n".join(self._tail)

    # ------------------------------------------------------------------ starting

    def start(self, timeout: float = 30.0, ready: Callable[[], bool] | None = None) -> Self:
        """Start the server and wait until it is healthy (and ``ready()``, when given, says
        so too); on any failure, stop it and raise ``ServerStartError`` with its output."""
        try:
            self.spawn()
            self.wait_healthy(timeout, ready)
        except BaseException:
            self.stop(timeout=5.0)  # never leave a half-started server behind
            raise
        return self

    def spawn(self) -> None:
        """Run the preparation, then start the process without waiting for it to serve (a
        supervisor starts several side by side and watches them)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        if self._prepare is not None:
            self._prepare(load_config(self.config_path, environ=self.env))
        self._signalled = False
        self._tail.clear()
        options: dict[str, Any] = {
            "cwd": PROJECT_ROOT,
            "env": self.env,
            "stdin": subprocess.DEVNULL,
            "stderr": subprocess.STDOUT,
            "start_new_session": self.own_group,
        }
        if isinstance(self.output, Path):
            self.output.parent.mkdir(parents=True, exist_ok=True)
            with self.output.open("ab") as log:  # the child keeps its own copy of the file
                self.process = subprocess.Popen(self.argv, stdout=log, **options)
        elif self.output is None:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, **options)
        else:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, **options)
            assert self.process.stdout is not None
            self._relay = threading.Thread(
                target=self._relay_lines,
                args=(self.process.stdout, self.output),
                name=f"output-{self.name}",
                daemon=True,
            )
            self._relay.start()

    def _relay_lines(self, stream: IO[bytes], sink: Callable[[str], None]) -> None:
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip("\r\n")
                self._tail.append(line)
                sink(line)

    def healthy(self, timeout: float = 1.0) -> bool:
        """One ``GET`` of the health path on a fresh connection: did it answer 200?"""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("GET", self.health_path)
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False  # not listening yet, or too busy starting to answer
        finally:
            connection.close()

    def wait_healthy(self, timeout: float = 30.0, ready: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None:
                raise RuntimeError(f"{self.name} was never started")
            code = self.process.poll()
            if code is not None:
                self._join_relay()  # so the message holds its last words
                raise ServerStartError(
                    f"{self.name} exited with status {code} before it served:\n{self.log()}"
                )
            if self.healthy() and (ready is None or ready()):
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} did not answer 200 on {self.url}{self.health_path} within "
                    f"{timeout:g} s:\n{self.log()}"
                )
            time.sleep(0.05)

    # ------------------------------------------------------------------ stopping

    def terminate(self) -> None:
        """Ask for the graceful stop without waiting for it (to stop several servers at once:
        ``terminate()`` each, then ``stop()`` each)."""
        if self.running and not self._signalled:
            self._send(self.stop_signal)
            self._signalled = True

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully; whatever still runs after ``timeout`` seconds is killed."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=max(timeout, 0.0))
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._join_relay()

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (also the quick end of throw-away servers, whose
        graceful stop would wait for long polls in flight)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self._send(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._join_relay()

    def _send(self, signum: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(self.process.pid, signum)
            elif signum == signal.SIGKILL:
                # A crash takes the workers too: granian's would outlive their main process.
                for pid in [*_descendants(self.process.pid), self.process.pid]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)
            else:
                self.process.send_signal(signum)  # the main process stops its own workers

    def _join_relay(self) -> None:
        if self._relay is not None:
            self._relay.join(timeout=5)  # workers that outlive their master still hold the pipe
            self._relay = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- our two servers


def init_service_tables(domain: str, config: Config) -> None:
    """Create the service's tables before gunicorn forks its workers: each worker also creates
    what is missing when it starts, and on a fresh SQLite file several doing it at once contend
    for the same CREATE (and WAL switch); done first, they all find the tables there."""
    from blog.wiring import build_service

    runtime = build_service(domain, config)
    try:
        runtime.init_db()
    finally:
        runtime.close()


def init_monolith_tables(config: Config) -> None:
    """``flask --app blog init-db``, before gunicorn forks (see :func:`init_service_tables`)."""
    from blog.wiring import build_monolith

    runtime = build_monolith(config)
    try:
        runtime.init_db()
    finally:
        runtime.close()


def service_process(domain: str, **options: Any) -> ServerProcess:
    """``domain``'s extracted service under the configured server (``options``: see
    :class:`ServerProcess`)."""
    options.setdefault("name", domain)
    options.setdefault("prepare", functools.partial(init_service_tables, domain))
    return ServerProcess(service_target(domain), **options)


def monolith_process(**options: Any) -> ServerProcess:
    """The monolith (``blog.wsgi:app``) under the configured server, healthy once
    ``/api/health`` is."""
    options.setdefault("name", "monolith")
    options.setdefault("health_path", "/api/health")
    options.setdefault("prepare", init_monolith_tables)
    return ServerProcess(MONOLITH_TARGET, **options)
