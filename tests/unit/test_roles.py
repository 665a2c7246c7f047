"""``python -m blog.roles``: the container image's entry point. Each role runs a command the
project has; the config's placeholders are filled from the environment into a private copy; a
service tells the registry its container's address; the health check asks the role's server."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from blog import create_app, roles
from blog.config import ConfigError, load_config
from blog.domains import HTTP_SERVICES
from blog.serving import MONOLITH_TARGET, server_command, service_target
from tests.support import make_config


def test_every_role_runs_a_command_the_project_has(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert set(roles.ROLES) == {"monolith", *HTTP_SERVICES, "worker", "relay", "init-db"}
    # the servers: the same command line blog.serving runs, on every interface of the container
    assert roles.command("monolith", config) == server_command(
        config.server, MONOLITH_TARGET, roles.MONOLITH_PORT, host="0.0.0.0"
    )
    for domain in HTTP_SERVICES:
        port = config.services[domain].port
        assert port is not None
        assert roles.command(domain, config) == server_command(
            config.server, service_target(domain), port, host="0.0.0.0"
        )
    for target in (MONOLITH_TARGET, *map(service_target, HTTP_SERVICES)):
        module = target.split(":")[0]
        assert importlib.util.find_spec(module) is not None, module  # found, not imported
    # the worker: a module of the project
    worker = roles.command("worker", config)
    assert worker[1:] == ["-m", "extracted.email.worker"]
    assert importlib.util.find_spec("extracted.email.worker") is not None
    # the relay and init-db: commands of the monolith's CLI
    app = create_app(config)
    try:
        for name in ("relay", "init-db"):
            argv = roles.command(name, config)
            assert argv[1:5] == ["-m", "flask", "--app", "blog"]
            assert argv[5] == name and name in app.cli.commands
    finally:
        app.extensions["blog.runtime"].close()


def test_roles_say_what_they_serve(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert roles.ROLES["monolith"].port(config) == 5000
    assert roles.ROLES["monolith"].health_path == "/api/health"
    for domain in HTTP_SERVICES:
        role = roles.ROLES[domain]
        assert (role.port(config), role.health_path, role.service) == (
            config.services[domain].port,
            "/health",
            domain,
        )
    assert roles.ROLES["worker"].port(config) == config.services["email"].port
    assert roles.ROLES["relay"].port(config) is None
    assert roles.ROLES["init-db"].one_shot and roles.ROLES["init-db"].port(config) is None


# --------------------------------------------------------------------------- the config file

TEMPLATE = """\
env: development
database_url: postgresql+psycopg://blog:${BLOG_DATABASE_PASSWORD}@postgres:5432/blog
images:
  local_dir: /data/images
events:
  rabbitmq_url: amqp://blog:${BLOG_RABBITMQ_PASSWORD}@rabbitmq:5672/%2F
"""


def test_placeholders_are_filled_from_the_environment_percent_encoded() -> None:
    environ = {"BLOG_DATABASE_PASSWORD": "p@ss:w/rd%", "BLOG_RABBITMQ_PASSWORD": "r"}
    assert roles.placeholders(TEMPLATE) == set(environ)
    rendered = yaml.safe_load(roles.render_config(TEMPLATE, environ))
    url = urlsplit(rendered["database_url"])
    assert (url.username, unquote(url.password or ""), url.hostname) == (
        "blog",
        "p@ss:w/rd%",
        "postgres",
    )
    assert rendered["events"]["rabbitmq_url"] == "amqp://blog:r@rabbitmq:5672/%2F"


@pytest.mark.parametrize("value", [None, ""])
def test_a_placeholder_without_its_variable_stops_the_start(value: str | None) -> None:
    environ = {"BLOG_RABBITMQ_PASSWORD": "r"}
    if value is not None:
        environ["BLOG_DATABASE_PASSWORD"] = value
    with pytest.raises(ConfigError, match=r"database_url: \$\{BLOG_DATABASE_PASSWORD\} needs"):
        roles.render_config(TEMPLATE, environ)


def test_a_config_with_placeholders_must_use_absolute_paths() -> None:
    environ = {"BLOG_DATABASE_PASSWORD": "x", "BLOG_RABBITMQ_PASSWORD": "r"}
    relative = TEMPLATE.replace("/data/images", "instance/images")
    with pytest.raises(ConfigError, match=r"images\.local_dir: 'instance/images' is relative"):
        roles.render_config(relative, environ)
    sqlite = "database_url: sqlite:///instance/blog.db\nlog_level: ${X}\n"
    with pytest.raises(ConfigError, match=r"database_url: 'instance/blog\.db' is relative"):
        roles.render_config(sqlite, {"X": "INFO"})
    roles.render_config("database_url: sqlite:////data/blog.db\nx: ${X}\n", {"X": "1"})


@pytest.fixture
def state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "role.json"
    monkeypatch.setattr(roles, "STATE_FILE", path)
    return path


class Exec(Exception):
    """Raised in place of os.execve: what the role would have become."""

    def __init__(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(path)
        self.argv, self.env = argv, env


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        raise Exec(path, argv, env)

    monkeypatch.setattr(os, "execve", fake_execve)


def test_run_execs_the_role_on_a_private_rendered_copy(
    tmp_path: Path, state_file: Path, exec_calls: None
) -> None:
    mounted = tmp_path / "config.yaml"
    mounted.write_text(TEMPLATE.replace("development", "testing"))
    environ = {
        "BLOG_CONFIG": str(mounted),
        "BLOG_DATABASE_PASSWORD": "s3cret/with@",
        "BLOG_RABBITMQ_PASSWORD": "r",
    }
    with pytest.raises(Exec) as execed:
        roles.run("images", environ)
    argv, env = execed.value.argv, execed.value.env
    assert argv == roles.command("images", load_config(mounted, environ=environ))
    private = Path(env["BLOG_CONFIG"])
    assert private != mounted and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_config(private, environ={}).database_url.startswith(
        "postgresql+psycopg://blog:s3cret%2Fwith%40@postgres"
    )
    assert "${" in mounted.read_text(), "the mounted file is left as it was"
    assert json.loads(state_file.read_text()) == {
        "role": "images",
        "port": 3003,
        "health_path": "/health",
    }
    private.unlink()


def test_run_without_placeholders_reads_the_mounted_file_itself(
    tmp_path: Path, state_file: Path, exec_calls: None
) -> None:
    mounted = tmp_path / "config.yaml"
    mounted.write_text("env: testing\n")
    with pytest.raises(Exec) as execed:
        roles.run("relay", {"BLOG_CONFIG": str(mounted)})
    assert execed.value.env["BLOG_CONFIG"] == str(mounted)
    assert json.loads(state_file.read_text())["port"] is None


def test_run_refuses_a_bad_config_with_its_message(
    tmp_path: Path, state_file: Path, exec_calls: None, capsys: pytest.CaptureFixture[str]
) -> None:
    mounted = tmp_path / "config.yaml"
    mounted.write_text("services: {images: {mode: htpp}}\n")
    assert roles.run("images", {"BLOG_CONFIG": str(mounted)}) == 2
    assert "services.images.mode: 'htpp' is not allowed" in capsys.readouterr().err
    assert not state_file.exists()


def test_a_service_tells_the_registry_its_container_address(tmp_path: Path) -> None:
    registry = make_config(tmp_path, discovery={"kind": "registry"})
    environ = {"POD_IP": "10.1.2.3"}
    env = roles.role_environment(roles.ROLES["images"], registry, environ)
    assert env["BLOG_INSTANCE_URL"] == "http://10.1.2.3:3003"
    assert env["BLOG_INSTANCE_NAME"]
    ipv6 = roles.role_environment(roles.ROLES["auth"], registry, {"POD_IP": "fd00::7"})
    assert ipv6["BLOG_INSTANCE_URL"] == "http://[fd00::7]:3001"
    chosen = {"POD_IP": "10.1.2.3", "BLOG_INSTANCE_URL": "http://images-0:3003"}
    assert roles.role_environment(roles.ROLES["images"], registry, chosen) == {
        **chosen,
        "BLOG_INSTANCE_NAME": env["BLOG_INSTANCE_NAME"],
    }
    # not a service, or no registry: nothing to advertise
    assert roles.role_environment(roles.ROLES["monolith"], registry, environ) == environ
    static = make_config(tmp_path)
    assert roles.role_environment(roles.ROLES["images"], static, environ) == environ


# --------------------------------------------------------------------------- healthcheck


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _state(path: Path, port: int | None, health_path: str | None) -> None:
    path.write_text(json.dumps({"role": "x", "port": port, "health_path": health_path}))


def test_healthcheck_asks_the_running_role(state_file: Path, health_server: int) -> None:
    assert roles.healthcheck(None) == 1  # no role started here
    _state(state_file, health_server, "/health")
    assert roles.healthcheck(None) == 0
    _state(state_file, health_server, "/api/health")  # answers 503
    assert roles.healthcheck(None) == 1
    _state(state_file, None, None)  # the relay: no HTTP, healthy while it runs
    assert roles.healthcheck(None) == 0


def test_healthcheck_of_a_named_role_reads_its_port_from_the_config(
    tmp_path: Path, health_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted = tmp_path / "config.yaml"
    mounted.write_text(f"services: {{email: {{port: {health_server}}}}}\n")
    monkeypatch.setenv("BLOG_CONFIG", str(mounted))
    assert roles.healthcheck("worker") == 0
    mounted.write_text("services: {email: {port: 1}}\n")  # nothing listens there
    assert roles.healthcheck("worker", timeout=0.5) == 1


def test_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mounted = tmp_path / "config.yaml"
    mounted.write_text("env: testing\n")
    monkeypatch.setenv("BLOG_CONFIG", str(mounted))
    assert roles.main(["list"]) == 0
    listed = capsys.readouterr().out.split("\n")
    assert [line.split()[0] for line in listed if line] == list(roles.ROLES)
    assert roles.main(["command", "posts"]) == 0
    out = capsys.readouterr().out
    assert "extracted.posts.wsgi:app" in out and "--host 0.0.0.0 --port 3002" in out
    with pytest.raises(SystemExit):
        roles.main(["nonsense"])
