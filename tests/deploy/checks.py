"""What the deployment tests check of a container, whichever file declares it (compose.yaml or a
Kubernetes pod template): its command is a role of the image, its environment and config file let
that role's process be built, and its health check asks a path that process serves.

Nothing here starts a server, opens a connection or needs the network: a process is *built* the
way it is when its container starts (``blog.roles`` renders the config, the composition root
builds the runtime), which validates the config, every secret production requires, and each
service credential the process asks for; building has no side effects (ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import falcon
import falcon.inspect
from flask import Flask

from blog import create_app, roles
from blog.config import Config, load_config
from blog.domains import HTTP_SERVICES
from blog.wiring import build_service

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "strangler-blog"
CONFIG_MOUNT = "/etc/blog/config.yaml"
BACKING_PORTS = {"postgres": 5432, "mariadb": 3306, "rabbitmq": 5672, "etcd": 2379}
"""Where the third-party images listen (their defaults; the manifests name them too)."""


def secret_value(name: str) -> str:
    """A stand-in for a secret: distinct per name and long enough for production's checks."""
    return "test-" + hashlib.sha256(name.encode()).hexdigest()


@dataclass(frozen=True)
class Container:
    """One container of the blog's image, as a deployment file declares it."""

    where: str
    """For messages: the file and the service or workload."""
    role: str
    environ: dict[str, str]
    """The environment the container gets (secrets replaced by stand-ins; optional ones that
    would be absent, absent)."""
    config_text: str
    """The config file mounted where ``BLOG_CONFIG`` points."""


@dataclass
class Built:
    config: Config
    paths: set[str]
    """The GET paths the role's HTTP app serves (empty for a role without one)."""


def _flask_paths(app: Flask) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())}


def _falcon_paths(app: falcon.App) -> set[str]:
    return {
        route.path
        for route in falcon.inspect.inspect_routes(app)
        if any(method.method == "GET" for method in route.methods)
    }


def load(container: Container, tmp_path: Path) -> Config:
    """The config the container's process reads: its mounted file, rendered from its
    environment (``blog.roles``), loaded and validated with that environment."""
    assert container.role in roles.ROLES, f"{container.where}: {container.role!r} is not a role"
    environ = dict(container.environ)
    assert environ.get("BLOG_CONFIG") == CONFIG_MOUNT, (
        f"{container.where}: BLOG_CONFIG must name the mounted file {CONFIG_MOUNT}"
    )
    path = tmp_path / f"{re.sub(r'[^a-z0-9]+', '-', container.where.lower())}.yaml"
    text = container.config_text
    if roles.placeholders(text):
        text = roles.render_config(text, environ)
    path.write_text(text, encoding="utf-8")
    environ["BLOG_CONFIG"] = str(path)
    return load_config(environ=environ)


@contextlib.contextmanager
def built(container: Container, tmp_path: Path) -> Iterator[Built]:
    """Build the container's process as its start would (the config as :func:`load` reads it,
    then the role's runtime). Raises what the container would die of."""
    config = load(container, tmp_path)
    role = container.role
    if role in ("monolith", "init-db", "relay"):
        app = create_app(config)
        try:
            if role == "relay":
                assert config.events.broker == "rabbitmq", (
                    f"{container.where}: the relay role needs events.broker: rabbitmq"
                )
            yield Built(config, _flask_paths(app))
        finally:
            app.extensions["blog.runtime"].close()
        return
    domain = "email" if role == "worker" else role
    assert domain in (*HTTP_SERVICES, "email")
    runtime = build_service(domain, config)
    try:
        yield Built(config, _falcon_paths(runtime.app.wsgi_app))  # type: ignore[arg-type]
    finally:
        runtime.close()


def check_probe(container: Container, built: Built, path: str, port: int | None) -> None:
    """A health check asks ``path`` on ``port``: the role's own health path and port, served."""
    role = roles.ROLES[container.role]
    assert role.health_path is not None, f"{container.where}: {role.name} serves no HTTP"
    assert path == role.health_path, (
        f"{container.where}: probes {path}, the {role.name} role's health path is "
        f"{role.health_path}"
    )
    assert path in built.paths, f"{container.where}: {path} is not a GET route of {role.name}"
    if port is not None:
        assert port == role.port(built.config), (
            f"{container.where}: probes port {port}, {role.name} serves on "
            f"{role.port(built.config)}"
        )


def roles_healthcheck(argv: list[str]) -> str | None:
    """The role ``python -m blog.roles healthcheck <role>`` names (None: not that command)."""
    match argv:
        case ["python", "-m", "blog.roles", "healthcheck", role]:
            return role
    return None


def database_url(config: Config, role: str) -> str:
    """The database the role's process uses."""
    if role in ("monolith", "init-db", "relay"):
        return config.database_url
    return config.service_database_url("email" if role == "worker" else role)


def config_endpoints(config: Config, role: str) -> list[tuple[str, str, int]]:
    """(what, host, port) of everything the role's process connects to, from its config."""
    found: list[tuple[str, str, int]] = []

    def add(what: str, url: str, default_port: int) -> None:
        parts = urlsplit(url)
        if parts.hostname:  # SQLite has none
            found.append((what, parts.hostname, parts.port or default_port))

    def database(what: str, url: str) -> None:
        scheme = urlsplit(url).scheme
        if scheme.startswith("postgresql"):
            add(what, url, 5432)
        elif scheme.startswith("mysql"):
            add(what, url, 3306)

    database("database", database_url(config, role))
    if role in ("monolith", "init-db", "relay"):
        for domain, service in config.services.items():
            if service.mode in ("http", "extracted"):
                for url in service.instance_urls():
                    add(f"services.{domain}.url", url, 80)
    if config.events.broker == "rabbitmq":
        add("events.rabbitmq_url", config.events.rabbitmq_url, 5672)
    if config.discovery.kind == "registry":
        add("discovery.registry.url", config.discovery.registry.url, 2379)
    return found


def environment_names_the_app_reads() -> set[str]:
    """Every variable the blog reads: each secret of blog.config, each service's own credential,
    and what the launcher uses (blog.roles, blog.serving, the registry's advertised URL)."""
    from blog import config as config_module

    names = {"BLOG_CONFIG", config_module.SERVER_WORKERS_ENV}
    for value in vars(config_module).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            names |= {f.metadata["env"] for f in dataclasses.fields(value) if "env" in f.metadata}
    names |= {f"BLOG_INTERNAL_TOKEN_{domain.upper()}" for domain in (*HTTP_SERVICES, "email")}
    names |= {
        "BLOG_DATABASE_PASSWORD",
        "BLOG_RABBITMQ_PASSWORD",
        "BLOG_INSTANCE_URL",
        "BLOG_INSTANCE_NAME",
        "BLOG_INBOX_HOST",
        "POD_IP",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    return names
