"""The monolith as a real server, and the plain keep-alive client that drives it.

``MonolithProcess`` serves ``blog:create_app()`` under gunicorn with the services' own settings
(``extracted/gunicorn.conf.py``: gthread, keep-alive), a fixed worker count, pinned to CPUs with
``taskset``, on a free loopback port, with a config file of its own (a copy of the user's with the
lab's overrides: temporary database and image folder, the extracted services' URLs).

``KeepAlive`` is the standard library's ``http.client`` on one persistent connection: the least
a client can add, used for the floor (``GET /ping``) and as the load generator.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.support import BIN, ROOT, free_port


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class MonolithProcess:
    """``gunicorn 'blog:create_app()'`` with ``workers`` gthread workers, pinned to ``cpus``."""

    def __init__(
        self,
        state: Path,
        base_config_path: str,
        overrides: Mapping[str, Any],
        *,
        workers: int = 2,
        cpus: str | None = None,
    ) -> None:
        state.mkdir(parents=True, exist_ok=True)
        base_path = Path(base_config_path)
        raw = yaml.safe_load(base_path.read_text()) if base_path.exists() else {}
        self.config_path = state / "monolith.yaml"
        self.config_path.write_text(yaml.safe_dump(_merge(raw or {}, overrides)))
        self.log_path = state / "monolith.log"
        self.port = free_port()
        self.workers = workers
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None

    def prepare_database(self) -> None:
        """Create the monolith's tables once, here, before gunicorn forks its workers: on a fresh
        SQLite file, workers that each run ``create_all`` at start-up race ("table ... already
        exists"), one fails to boot and gunicorn shuts the whole server down."""
        from blog import create_app
        from blog.config import load_config

        app = create_app(load_config(self.config_path))
        app.extensions["blog.domains"].close()

    def start(self, timeout: float = 30.0) -> MonolithProcess:
        self.prepare_database()
        command = [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "extracted" / "gunicorn.conf.py"),
            "-b",
            f"127.0.0.1:{self.port}",
            "blog:create_app()",
        ]
        if self.cpus:
            command = ["taskset", "-c", self.cpus, *command]
        env = {
            **os.environ,
            "BLOG_CONFIG": str(self.config_path),
            "BLOG_SERVICE_WORKERS": str(self.workers),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the monolith exited:\n{self.log_path.read_text()}")
            try:
                with KeepAlive(self.port, timeout=2) as client:
                    if client.request("GET", "/api/health")[0] == 200 and self.ready():
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the monolith did not start:\n{self.log_path.read_text()}")

    def ready(self) -> bool:
        """Every worker forked (the master forks them one by one after binding)."""
        from bench.procstat import process_tree

        return self.process is not None and len(process_tree(self.process.pid)) > self.workers

    def kill(self) -> None:
        """SIGKILL the process group: the lab's data is throw-away, and a graceful stop would wait
        for the event-feed pullers' long polls."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class _NoDelayConnection(http.client.HTTPConnection):
    """``http.client`` sends a request's headers and body in two writes; with Nagle's algorithm
    on, the body waits for the server to acknowledge the headers. urllib3 and gunicorn both set
    TCP_NODELAY, so the lab's client does too."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class KeepAlive:
    """One persistent HTTP/1.1 connection (``http.client``); ``request`` reads the whole body."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self.connection = _NoDelayConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body, headers=dict(headers or {}))
        response = self.connection.getresponse()
        return response.status, response.read()

    def json(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: int = 200,
    ) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        all_headers = {**(headers or {}), **({"Content-Type": "application/json"} if body else {})}
        status, data = self.request(method, path, body, all_headers)
        if status != expect:
            raise AssertionError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> KeepAlive:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class PlainServer:
    """A throw-away server process (``command`` must listen on ``port``), pinned to ``cpus``."""

    def __init__(
        self,
        command: list[str],
        port: int,
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = port
        self.command = ["taskset", "-c", cpus, *command] if cpus else command
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> PlainServer:
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command} exited with {self.process.returncode}")
            try:
                with KeepAlive(self.port, timeout=2) as client:
                    if client.request("GET", "/ping")[0] == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.command} did not answer on port {self.port}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
