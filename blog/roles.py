"""``python -m blog.roles <role>``: the one entry point of the container image.

One image runs every process of the blog; its command names the role (``Dockerfile``,
``compose.yaml``, ``deploy/k8s``). Each role is a command the project already has, started the
way ``blog.serving`` starts it, but listening on every interface of the container instead of
loopback:

==========  ===================================================================================
monolith    the gateway, ``blog.wsgi:app`` under the configured server (granian), port 5000
auth,       each extracted service, ``extracted.<domain>.wsgi:app`` under the configured server,
posts, ...  on ``services.<domain>.port``
worker      the email service, ``python -m extracted.email.worker`` (a RabbitMQ consumer)
relay       ``flask --app blog relay``: the in-process domains' outbox relay on its own
init-db     ``flask --app blog init-db``: the monolith's tables, then exit
==========  ===================================================================================

``python -m blog.roles healthcheck [ROLE]`` asks the role's server for its health path on
loopback (the image's ``HEALTHCHECK`` and Kubernetes' exec probes); ``command ROLE`` prints the
command line a role runs; ``list`` prints the roles.

Before it replaces itself with the role's command (``exec``: the server is then the process the
container engine signals), the launcher:

- loads and validates the config file ``BLOG_CONFIG`` names, so a wrong key stops the container
  with the config's own message;
- fills the file's ``${NAME}`` placeholders from the environment, percent-encoded (they stand for
  the passwords inside database and broker URLs, which ``blog.config`` has no variable for), into
  a private copy (mode 0600, in the temporary folder) that ``BLOG_CONFIG`` then names: the file
  mounted into the container holds no secret;
- with ``discovery.kind: registry``, tells a service the URL to register (``BLOG_INSTANCE_URL``):
  its own address in the container network (``POD_IP`` when Kubernetes gives it) and its port,
  where without it the service would register loopback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from blog.config import Config, ConfigError, load_config
from blog.domains import HTTP_SERVICES
from blog.serving import MONOLITH_TARGET, server_command, service_target

BIND_HOST = "0.0.0.0"
"""A container's server listens on every interface of the container (its network is its own)."""
MONOLITH_PORT = 5000
STATE_FILE = Path(tempfile.gettempdir()) / "blog-role.json"
"""What the running role is, for ``healthcheck`` without an argument (the image's HEALTHCHECK)."""
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


@dataclass(frozen=True)
class Role:
    name: str
    summary: str
    argv: Callable[[Config], list[str]]
    port: Callable[[Config], int | None]
    """The port the role serves HTTP on (None: it serves none)."""
    health_path: str | None = None
    service: str | None = None
    """The domain whose extracted service this role runs (registers itself with a registry)."""
    one_shot: bool = False


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _service_role(domain: str) -> Role:
    def port(config: Config) -> int:
        value = config.services[domain].port
        if value is None:
            raise ConfigError(f"services.{domain}.port: required to serve {domain}")
        return value

    return Role(
        name=domain,
        summary=f"the {domain} service ({service_target(domain)})",
        argv=lambda config: server_command(
            config.server, service_target(domain), port(config), host=BIND_HOST
        ),
        port=port,
        health_path="/health",
        service=domain,
    )


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            name="monolith",
            summary=f"the gateway and every in-process domain ({MONOLITH_TARGET})",
            argv=lambda config: server_command(
                config.server, MONOLITH_TARGET, MONOLITH_PORT, host=BIND_HOST
            ),
            port=lambda config: MONOLITH_PORT,
            health_path="/api/health",
        ),
        *(_service_role(domain) for domain in HTTP_SERVICES),
        Role(
            name="worker",
            summary="the email service: a RabbitMQ consumer (python -m extracted.email.worker)",
            argv=lambda config: _python("-m", "extracted.email.worker"),
            port=lambda config: config.services["email"].port,
            health_path="/health",
        ),
        Role(
            name="relay",
            summary="the outbox relay on its own (flask --app blog relay)",
            argv=lambda config: _python("-m", "flask", "--app", "blog", "relay"),
            port=lambda config: None,
        ),
        Role(
            name="init-db",
            summary="create the monolith's tables, then exit (flask --app blog init-db)",
            argv=lambda config: _python("-m", "flask", "--app", "blog", "init-db"),
            port=lambda config: None,
            one_shot=True,
        ),
    )
}


# --------------------------------------------------------------------------- the config file


def placeholders(text: str) -> set[str]:
    """The variables a config file's ``${NAME}`` placeholders name."""
    return set(PLACEHOLDER.findall(text))


def _fill(value: Any, environ: Mapping[str, str], key: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, environ, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, environ, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not environ.get(name):
            raise ConfigError(f"{key}: ${{{name}}} needs the environment variable {name}")
        return quote(environ[name], safe="")

    return PLACEHOLDER.sub(substitute, value)


def render_config(text: str, environ: Mapping[str, str]) -> str:
    """The config text with every ``${NAME}`` replaced by ``environ[NAME]``, percent-encoded.

    Placeholders stand inside URLs (``postgresql+psycopg://auth:${BLOG_DATABASE_PASSWORD}@...``):
    the encoding keeps a password with ``@``, ``/`` or ``:`` from breaking its URL. Relative
    paths would resolve against the copy's folder, not the original's, so a file with
    placeholders must use absolute ones.
    """
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of keys")
    filled = _fill(raw, environ, "")
    for key, value in _paths(filled):
        if not value.startswith("/"):
            raise ConfigError(
                f"{key}: {value!r} is relative; a config file with ${{...}} placeholders is "
                "read from a private copy elsewhere, so its paths must be absolute"
            )
    return yaml.safe_dump(filled, sort_keys=False)


def _paths(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    images = config.get("images")
    if isinstance(images, Mapping) and isinstance(images.get("local_dir"), str):
        found.append(("images.local_dir", images["local_dir"]))
    urls = [("database_url", config.get("database_url"))]
    services = config.get("services")
    if isinstance(services, Mapping):
        urls += [
            (f"services.{name}.database_url", section.get("database_url"))
            for name, section in services.items()
            if isinstance(section, Mapping)
        ]
    for key, url in urls:
        if isinstance(url, str) and url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path and path != ":memory:" and not path.startswith("file:"):
                found.append((key, path))
    return found


def prepare_config(environ: dict[str, str]) -> Config:
    """Load (and, with placeholders, render) the config ``BLOG_CONFIG`` names; on return,
    ``environ["BLOG_CONFIG"]`` names the file the role's process must read."""
    path = environ.get("BLOG_CONFIG")
    if path and Path(path).is_file():
        text = Path(path).read_text(encoding="utf-8")
        if placeholders(text):
            rendered = render_config(text, environ)
            fd, private = tempfile.mkstemp(prefix="blog-config-", suffix=".yaml")  # mode 0600
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(rendered)
            environ["BLOG_CONFIG"] = private
    return load_config(environ=environ)


# --------------------------------------------------------------------------- running a role


def own_address(environ: Mapping[str, str]) -> str:
    """This container's address on its network: Kubernetes' ``POD_IP`` (the downward API), else
    what the host name resolves to (Docker writes it into /etc/hosts)."""
    return environ.get("POD_IP") or socket.gethostbyname(socket.gethostname())


def role_environment(role: Role, config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment the role's command runs in."""
    env = dict(environ)
    if role.service is not None and config.discovery.kind == "registry":
        port = role.port(config)
        address = own_address(environ)
        host = f"[{address}]" if ":" in address else address
        env.setdefault("BLOG_INSTANCE_URL", f"http://{host}:{port}")
        env.setdefault("BLOG_INSTANCE_NAME", socket.gethostname())
    return env


def command(name: str, config: Config) -> list[str]:
    """The command line role ``name`` runs with ``config``."""
    return ROLES[name].argv(config)


def run(name: str, environ: Mapping[str, str] | None = None) -> int:
    """Replace this process with role ``name``'s command (returns only when it cannot start)."""
    role = ROLES[name]
    env = dict(os.environ if environ is None else environ)
    try:
        config = prepare_config(env)
        argv = role.argv(config)
        state = {"role": name, "port": role.port(config), "health_path": role.health_path}
    except ConfigError as exc:
        print(f"blog.roles {name}: cannot start: {exc}", file=sys.stderr)
        return 2
    env = role_environment(role, config, env)
    try:
        STATE_FILE.write_text(json.dumps(state), encoding="utf-8")
    except OSError as exc:  # a read-only temporary folder: only HEALTHCHECK without a role needs it
        print(f"blog.roles {name}: {STATE_FILE}: {exc}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


def probe(port: int, path: str, timeout: float) -> tuple[bool, str]:
    """One GET of ``path`` on ``127.0.0.1:port``: (answered 200, what happened)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return False, f"GET {path} on port {port}: {exc}"
    finally:
        connection.close()
    return status == 200, f"GET {path} on port {port}: {status}"


def healthcheck(name: str | None, timeout: float = 3.0) -> int:
    """0 when the role's server answers 200 on its health path (a role that serves no HTTP is
    healthy while its process runs), 1 otherwise."""
    if name is None:
        try:
            state = json.loads(STATE_FILE.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            print(f"no role has started in this container ({STATE_FILE}: missing or unreadable)")
            return 1
        port, path = state.get("port"), state.get("health_path")
    else:
        role = ROLES[name]
        try:
            port = role.port(load_config())
        except ConfigError as exc:
            print(f"cannot read the config: {exc}")
            return 1
        path = role.health_path
    if port is None or path is None:
        print("serves no HTTP: healthy while it runs")
        return 0
    ok, what = probe(int(port), str(path), timeout)
    print(what)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    names = list(ROLES)
    parser = argparse.ArgumentParser(
        prog="python -m blog.roles",
        description="Run one process of the blog: "
        + "; ".join(f"{r.name}: {r.summary}" for r in ROLES.values()),
    )
    parser.add_argument("role", choices=[*names, "healthcheck", "command", "list"])
    parser.add_argument("target", nargs="?", choices=names, help="healthcheck/command: the role")
    parser.add_argument("--timeout", type=float, default=3.0, help="healthcheck: seconds")
    args = parser.parse_args(argv)
    if args.role == "list":
        for role in ROLES.values():
            print(f"{role.name:10} {role.summary}")
        return 0
    if args.role == "healthcheck":
        return healthcheck(args.target, args.timeout)
    if args.role == "command":
        if args.target is None:
            parser.error("command: name the role")
        print(" ".join(command(args.target, load_config())))
        return 0
    if args.target is not None:
        parser.error(f"{args.role} takes no argument")
    return run(args.role)


if __name__ == "__main__":
    sys.exit(main())
