"""Helpers shared by tests that are not fixtures (import them from here, not from conftest)."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from blog.config import Config, load_config
from blog.domains import HTTP_SERVICES
from blog.serving import ServerProcess, init_service_tables, service_target
from blog.serving import free_port as free_port
from blog.wiring import Domains, build_monolith, runtime_of

T = TypeVar("T")


TEST_RATE_LIMITS: dict[str, Any] = {
    "storage_url": "memory://",
    "login_per_account": "100000 per minute",
    "login_per_address": "100000 per minute",
    "register_per_address": "100000 per minute",
    "writes_per_user": "100000 per minute",
}
"""The suite never trips a limit by accident: each test's app counts in its own memory, with
limits no test reaches. The tests of the limits set their own (tests/api/test_rate_limits.py)."""


def config_overrides(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Config overrides that keep a test's state inside its own tmp_path."""
    overrides: dict[str, Any] = {
        "env": "testing",
        "database_url": f"sqlite:///{tmp_path}/blog.db",
        "log_level": "WARNING",
        "auth": {"bcrypt_rounds": 4},
        "images": {"local_dir": str(tmp_path / "images")},
        "rate_limits": TEST_RATE_LIMITS,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(overrides.get(key), dict):
            overrides[key] = {**overrides[key], **value}
        else:
            overrides[key] = value
    return overrides


def make_config(tmp_path: Path, **extra: Any) -> Config:
    empty = tmp_path / "empty-config.yaml"
    empty.write_text("{}\n")
    return load_config(empty, overrides=config_overrides(tmp_path, **extra))


def require_service(name: str, port: int, how_to_start: str, host: str = "127.0.0.1") -> None:
    """Skip (or, under BLOG_REQUIRE_SERVICES=1, fail) when a real service is not listening."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return
    except OSError:
        message = f"{name} is not reachable on {host}:{port}; start it with: {how_to_start}"
    if os.environ.get("BLOG_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


# ------------------------------------------------------------------ servers for extracted domains

HTTP_DOMAINS = HTTP_SERVICES


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Retry ``check`` until it stops raising AssertionError: events across processes arrive
    eventually, and the test says so instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(interval)


def service_overrides(
    domain: str, tmp_path: Path, *, service_database_url: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Config for an extracted service whose state lives in tmp_path (its database too, unless
    ``service_database_url`` names another one, e.g. on PostgreSQL)."""
    database_url = service_database_url or f"sqlite:///{tmp_path}/{domain}-service.db"
    return config_overrides(tmp_path, services={domain: {"database_url": database_url}}, **extra)


class ThreadedServer:
    """A WSGI app on a real loopback socket, in a thread: cheap enough to start per test."""

    def __init__(
        self,
        app: Any,
        port: int = 0,
        url: str | None = None,
        binding: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        """``binding``: a context the listening socket is made in (a network namespace);
        ``url``: what callers use, when not the socket itself (a proxy in front of it)."""
        from werkzeug.serving import WSGIRequestHandler, make_server

        WSGIRequestHandler.protocol_version = "HTTP/1.1"  # keep-alive, like the real server
        self._app = app
        runtime_of(app).start()  # a server that starts serving starts its app's work
        with binding or contextlib.nullcontext():
            self._server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = url or f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        runtime_of(self._app).close()  # relays and consumers, before their queues are deleted


def start_threaded_service(domain: str, tmp_path: Path, **extra: Any) -> ThreadedServer:
    module = importlib.import_module(f"extracted.{domain}")
    state = tmp_path / f"{domain}-service"
    state.mkdir(exist_ok=True)
    return ThreadedServer(module.create_app(service_overrides(domain, state, **extra)))


class ServiceProcess(ServerProcess):
    """An extracted service under gunicorn (one worker), as a real process with its own database
    and its own log file.

    ``kill()`` and ``start()`` let fault tests take it down and bring it back on the same port
    with the same data.
    """

    def __init__(
        self,
        domain: str,
        tmp_path: Path,
        *,
        service_database_url: str | None = None,
        **extra: Any,
    ) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.domain = domain
        self.log_path = tmp_path / f"{domain}-service.log"
        config_path = tmp_path / f"{domain}-service.yaml"
        overrides = service_overrides(
            domain, tmp_path, service_database_url=service_database_url, **extra
        )
        config_path.write_text(yaml.safe_dump(overrides))
        super().__init__(
            service_target(domain),
            name=f"{domain} service",
            config_path=config_path,
            workers=1,
            output=self.log_path,
            prepare=functools.partial(init_service_tables, domain),
            stop_signal=signal.SIGINT,  # gunicorn's quick shutdown: tests do not wait for drains
        )


@contextmanager
def deploy(domain: str, mode: str, tmp_path: Path, **extra: Any) -> Iterator[Domains]:
    """The monolith's domains with ``domain`` in ``mode``; in http mode its service runs as a
    real gunicorn process with its own database, and the same wiring builds the client."""
    if mode == "inprocess":
        with started(build_monolith(make_config(tmp_path, **extra))) as domains:
            yield domains
        return
    if mode == "wire":
        services = {domain: {"mode": "wire", "database_url": f"sqlite:///{tmp_path}/{domain}.db"}}
        with started(build_monolith(make_config(tmp_path, services=services, **extra))) as domains:
            yield domains
        return
    with ServiceProcess(domain, tmp_path, **extra) as service:
        config = make_config(
            tmp_path, services={domain: {"mode": "http", "url": service.url}}, **extra
        )
        with started(build_monolith(config)) as domains:
            yield domains


@contextmanager
def started(runtime: Any) -> Iterator[Domains]:
    """A built monolith, started (its tables made, its background jobs running) and closed."""
    runtime.start()
    try:
        yield runtime.registry
    finally:
        runtime.close()


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


# ------------------------------------------------------------------ RabbitMQ


RABBITMQ_START = "rabbitmq-server -detached"


class IsolatedBroker:
    """This test's own exchange and queue names on the machine's RabbitMQ, deleted afterwards."""

    def __init__(self) -> None:
        require_service("RabbitMQ", 5672, RABBITMQ_START)
        tag = uuid.uuid4().hex[:10]
        self.exchange = f"events-test-{tag}"
        self.queue_prefix = f"t{tag}-"
        self.url = "amqp://guest:guest@127.0.0.1:5672/%2F"

    def overrides(self) -> dict[str, Any]:
        return {
            "events": {
                "broker": "rabbitmq",
                "exchange": self.exchange,
                "queue_prefix": self.queue_prefix,
                "rabbitmq_url": self.url,
            }
        }

    def delete(self) -> None:
        import pika

        from blog.domains import consumer_queues

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = connection.channel()
            for queue in consumer_queues():
                for name in (self.queue_prefix + queue, self.queue_prefix + queue + ".dlq"):
                    channel.queue_delete(name)
            for name in (self.exchange, self.exchange + ".dlx"):
                channel.exchange_delete(name)
        finally:
            connection.close()


class ThreadedEmailWorker:
    """The extracted email worker's consumer and inbox server, in threads of this process."""

    def __init__(self, config: Config) -> None:
        from extracted.email.worker import EmailWorker

        self._worker = EmailWorker(config)
        self.consumer = self._worker.consumer
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()


def race(app: Any, calls: list[Callable[[Any], Any]]) -> list[Any]:
    """Run each call in its own thread with its own test client, all released at once (a
    barrier): what concurrent requests to one row look like."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[Any], Any]) -> Any:
        client = app.test_client()
        barrier.wait()
        return call(client)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


Script = Callable[[socket.socket, bytes], bool]
"""Given the connection and one request's bytes, answer (or not); False closes the connection."""


class ScriptedServer:
    """A loopback HTTP/1.1 server that reads each request (head and Content-Length body) and
    hands it to a script; it records every request, per connection."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[list[bytes]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            received: list[bytes] = []
            self.connections.append(received)
            threading.Thread(target=self._serve, args=(client, received), daemon=True).start()

    @property
    def requests(self) -> list[bytes]:
        return [request for connection in self.connections for request in connection]

    def _serve(self, client: socket.socket, received: list[bytes]) -> None:
        with client, client.makefile("rb") as reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + (reader.read(length) if length else b"")
                received.append(request)
                if not self._script(client, request):
                    return

    def close(self) -> None:
        self.server.close()


ID_ROUTES = [
    ("GET", "/api/posts/{}", None, "post_not_found"),
    ("PATCH", "/api/posts/{}", {"title": "t"}, "post_not_found"),
    ("DELETE", "/api/posts/{}", None, "post_not_found"),
    ("GET", "/api/posts/{}/comments", None, "post_not_found"),
    ("POST", "/api/posts/{}/comments", {"body": "b"}, "post_not_found"),
    ("GET", "/api/users/{}", None, "user_not_found"),
    ("GET", "/api/payments/{}", None, "payment_not_found"),
]
"""Every public route with an id in its path."""
