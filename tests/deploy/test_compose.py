"""compose.yaml, checked offline: the Compose specification's JSON schema (check-jsonschema's
vendored copy), then what a schema cannot see — every dependency and health check points at
something that exists and can pass, every container runs a role the image has and can be built
from its environment and mounted config, every host its config names is a service of the file,
and every database login matches the database that creates it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from blog import roles
from tests.deploy.checks import (
    BACKING_PORTS,
    CONFIG_MOUNT,
    IMAGE,
    ROOT,
    Container,
    built,
    check_probe,
    config_endpoints,
    database_url,
    environment_names_the_app_reads,
    load,
    roles_healthcheck,
    secret_value,
)

COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")


def env_example() -> tuple[dict[str, str], set[str]]:
    """.env.example's variables: (the uncommented ones, each with its value; the commented)."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[match[1]] = match[2]
        elif match := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=", line):
            commented.add(match[1])
    return active, commented


def dotenv(optional: bool = False) -> dict[str, str]:
    """The .env a user makes from .env.example: every uncommented variable filled in (and with
    ``optional``, the commented ones too)."""
    active, commented = env_example()
    return {name: secret_value(name) for name in (*active, *(commented if optional else ()))}


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's interpolation of ``${VAR}``, ``${VAR:?error}``, ``${VAR:-default}``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2], match[3]
        present = env.get(name, "") if operator and operator.startswith(":") else env.get(name)
        if present:
            return present
        if operator in (":?", "?"):
            raise AssertionError(f"compose would refuse to start: {name}: {argument}")
        if operator in (":-", "-"):
            return argument or ""
        return ""

    return VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """compose.yaml as Compose reads it, with the .env a user makes from .env.example."""
    result = interpolate(raw, dotenv())
    assert isinstance(result, dict)
    return result


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services(compose).items()
        if service.get("image", "").startswith(IMAGE)
    }


def environment(service: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: a variable listed without a value passes the .env's on, and
    is absent when the .env has none."""
    declared = service.get("environment") or {}
    assert isinstance(declared, dict), "environment: use the mapping form"
    result: dict[str, str] = {}
    for name, value in declared.items():
        if value is None:
            if name in env:
                result[name] = env[name]
        else:
            result[name] = str(value)
    return result


def mounted_config(service: dict[str, Any]) -> str:
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        target = rest.split(":")[0]
        if target == CONFIG_MOUNT:
            assert source.startswith("./"), f"{volume}: mount the config from the repository"
            return (ROOT / source).read_text(encoding="utf-8")
    raise AssertionError(f"nothing is mounted at {CONFIG_MOUNT}")


def container(name: str, service: dict[str, Any], optional: bool = False) -> Container:
    """The container of service ``name``, with the .env made from .env.example (``optional``:
    the commented variables set too)."""
    command = service.get("command")
    assert isinstance(command, list) and len(command) == 1, f"{name}: command: [<role>]"
    return Container(
        where=f"compose.yaml: {name}",
        role=command[0],
        environ=environment(service, dotenv(optional)),
        config_text=mounted_config(service),
    )


def healthcheck_argv(service: dict[str, Any]) -> list[str] | None:
    check = service.get("healthcheck")
    if not check or check.get("disable"):
        return None
    test = check["test"]
    assert isinstance(test, list) and test[0] == "CMD", "healthcheck: the exec form"
    return list(test[1:])


# --------------------------------------------------------------------------- schema


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- secrets


def test_every_variable_compose_reads_is_in_env_example_without_a_value(
    raw: dict[str, Any],
) -> None:
    active, commented = env_example()
    text = COMPOSE.read_text()
    for match in VARIABLE.finditer(text):
        name, operator = match[1], match[2]
        assert name in active, f"${{{name}}}: not in .env.example (uncommented)"
        assert operator in (":?", "?"), f"${{{name}}}: a secret has no default; use :?message"
    for name, service in services(raw).items():
        for variable, value in (service.get("environment") or {}).items():
            if value is None:  # passed on from .env when set there: optional
                assert variable in active or variable in commented, (
                    f"{name}: {variable} is not in .env.example"
                )
    assert all(value == "" for value in active.values()), (
        ".env.example is an example: it holds no value, only names"
    )


def test_secrets_come_from_the_environment_only(raw: dict[str, Any]) -> None:
    not_secret = {"BLOG_CONFIG", "BLOG_SERVER_WORKERS", "BLOG_INBOX_HOST"}
    secret_names = environment_names_the_app_reads() - not_secret
    for name, service in services(raw).items():
        for variable, value in (service.get("environment") or {}).items():
            if "PASSWORD" in variable or variable in secret_names:
                assert value is None or VARIABLE.fullmatch(str(value)), (
                    f"{name}: {variable} must come from .env, not be written in compose.yaml"
                )


def test_env_files_with_secrets_are_ignored_by_git() -> None:
    for path in (".env", "deploy/k8s/base/secrets.env"):
        result = subprocess.run(
            ["git", "check-ignore", "--quiet", path], cwd=ROOT, check=False, capture_output=True
        )
        assert result.returncode == 0, f"{path}: .gitignore must keep it out of git"


# --------------------------------------------------------------------------- the graph


def test_every_dependency_exists_and_can_be_met(compose: dict[str, Any]) -> None:
    everything = services(compose)
    for name, service in everything.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in everything, f"{name} depends on {target}, which is not a service"
            condition = rule["condition"]
            dependency = everything[target]
            if condition == "service_healthy":
                assert healthcheck_argv(dependency) is not None, (
                    f"{name} waits for {target} to be healthy, which has no health check"
                )
            elif condition == "service_completed_successfully":
                role = dependency.get("command", [None])[0]
                assert role in roles.ROLES and roles.ROLES[role].one_shot, (
                    f"{name} waits for {target} to complete, which runs {role!r} (no one-shot)"
                )
                assert dependency.get("restart") == "no", f"{target}: a one-shot: restart 'no'"
    # no cycle: every service can be started after what it depends on
    started: set[str] = set()
    while len(started) < len(everything):
        ready = [
            name
            for name, service in everything.items()
            if name not in started and set(service.get("depends_on") or {}) <= started
        ]
        assert ready, f"depends_on has a cycle among {sorted(set(everything) - started)}"
        started.update(ready)


def test_every_app_container_runs_a_role_and_checks_its_own_health(
    compose: dict[str, Any],
) -> None:
    assert app_services(compose), "no service runs the blog's image"
    for name, service in app_services(compose).items():
        role = container(name, service).role
        assert role in roles.ROLES, f"{name}: {role!r} is not one of {sorted(roles.ROLES)}"
        argv = healthcheck_argv(service)
        if roles.ROLES[role].one_shot:
            assert argv is None, f"{name}: a one-shot role has no health to check"
        else:
            assert argv is not None and roles_healthcheck(argv) == role, (
                f"{name}: healthcheck must be python -m blog.roles healthcheck {role}"
            )


APP_CONTAINERS = sorted(
    name
    for name, s in yaml.safe_load(COMPOSE.read_text())["services"].items()
    if str(s.get("image", "")).startswith(IMAGE)
)
"""Every service of compose.yaml that runs the blog's image."""


@pytest.mark.parametrize("name", APP_CONTAINERS)
def test_app_container_builds_from_its_environment_and_config(
    name: str, compose: dict[str, Any], tmp_path: Path
) -> None:
    """The process starts as the container would start it, and serves its health path."""
    box = container(name, app_services(compose)[name])
    unknown = set(box.environ) - environment_names_the_app_reads()
    assert not unknown, f"{name}: the blog reads no {sorted(unknown)}"
    with built(box, tmp_path) as process:
        role = roles.ROLES[box.role]
        if role.health_path is not None:
            check_probe(box, process, role.health_path, role.port(process.config))


@pytest.mark.parametrize("name", APP_CONTAINERS)
def test_app_container_gets_every_secret_production_asks_for(
    name: str, raw: dict[str, Any], tmp_path: Path
) -> None:
    """The file runs with ``env: development`` (the walkthrough reads the dev inbox), which would
    start on development secrets: so build each process once more as production would, with
    the .env complete (optional credentials included), to prove the variables reach it."""
    service = app_services(interpolate(raw, dotenv(optional=True)))[name]
    box = container(name, service, optional=True)
    text, changed = re.subn(r"(?m)^env: development$", "env: production", box.config_text)
    assert changed == 1
    with built(dataclasses.replace(box, config_text=text), tmp_path):
        pass


def test_config_names_only_services_compose_runs(compose: dict[str, Any], tmp_path: Path) -> None:
    everything = services(compose)
    for name, service in app_services(compose).items():
        box = container(name, service)
        config = load(box, tmp_path)
        for what, host, port in config_endpoints(config, box.role):
            assert host in everything, f"{name}: {what} names {host}, not a compose service"
            target = everything[host]
            if host in app_services(compose):
                expected = roles.ROLES[target["command"][0]].port(config)
            else:
                expected = BACKING_PORTS[target["image"].split("/")[-1].split(":")[0]]
            assert port == expected, f"{name}: {what}: port {port}; {host} serves {expected}"


def variable(value: object) -> str:
    """The variable a ``${NAME:?...}`` value reads."""
    match = VARIABLE.fullmatch(str(value))
    assert match is not None, f"{value!r}: not read from .env"
    return match[1]


def test_each_login_is_the_one_its_server_creates(raw: dict[str, Any], tmp_path: Path) -> None:
    """The password variable a container passes as BLOG_DATABASE_PASSWORD (and
    BLOG_RABBITMQ_PASSWORD) is the one its server creates that login with (postgres-init.sh,
    MariaDB's and RabbitMQ's variables): a mismatch would show only as a refused login."""
    everything = services(raw)
    init = (ROOT / "deploy" / "compose" / "postgres-init.sh").read_text()
    listed = re.search(r"for name in ([a-z ]+); do", init)
    assert listed is not None
    created = set(listed[1].split())
    postgres_env = everything["postgres"]["environment"]
    maria_env = everything["mariadb"]["environment"]
    rabbit_env = everything["rabbitmq"]["environment"]
    for name, service in app_services(interpolate(raw, dotenv())).items():
        box = container(name, service)
        declared = everything[name]["environment"]
        config = load(box, tmp_path)
        url = urlsplit(database_url(config, box.role))
        user, database = url.username, url.path.lstrip("/")
        if url.hostname == "postgres":
            assert user is not None and user == database and user in created, (
                f"{name}: postgres-init.sh creates no login and database {user!r}"
            )
            assert variable(postgres_env[f"{user.upper()}_DB_PASSWORD"]) == variable(
                declared["BLOG_DATABASE_PASSWORD"]
            ), f"{name}: not the password postgres-init.sh gives {user}"
        else:
            assert url.hostname == "mariadb", f"{name}: {url.hostname}: which server is it?"
            assert (maria_env["MARIADB_USER"], maria_env["MARIADB_DATABASE"]) == (
                user,
                database,
            )
            assert variable(maria_env["MARIADB_PASSWORD"]) == variable(
                declared["BLOG_DATABASE_PASSWORD"]
            )
        broker = urlsplit(config.events.rabbitmq_url)
        assert broker.username == rabbit_env["RABBITMQ_DEFAULT_USER"]
        assert variable(declared["BLOG_RABBITMQ_PASSWORD"]) == variable(
            rabbit_env["RABBITMQ_DEFAULT_PASS"]
        )


def test_images_runs_three_replicas_the_monolith_sees(compose: dict[str, Any]) -> None:
    images = services(compose)["images"]
    assert images["deploy"]["replicas"] == 3
    monolith = container("monolith", services(compose)["monolith"])
    config = yaml.safe_load(monolith.config_text)
    # a static URL would reach one replica; DNS answers with all three, the registry lists them
    assert config["discovery"]["kind"] in ("dns", "registry")
    assert config["services"]["images"]["url"].startswith("http://images:")


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / "Dockerfile").is_file()


def test_postgres_init_script_is_one_file_in_two_places() -> None:
    compose_copy = ROOT / "deploy" / "compose" / "postgres-init.sh"
    k8s_copy = ROOT / "deploy" / "k8s" / "base" / "postgres-init.sh"
    assert compose_copy.read_bytes() == k8s_copy.read_bytes()
    assert compose_copy.stat().st_mode & 0o111, "the postgres image runs it when executable"
