"""The Dockerfile, checked offline: parsed by the official BuildKit parser (the ``dockerfile``
package wraps it), then held to what the image promises — a build stage and a slim runtime, a
non-root user, the role launcher as entry point with a default role the image has, a health
check, the roles' ports exposed, no secret in it or in its build context, every module a role
runs packaged, and the config it ships serving the monolith."""

from __future__ import annotations

import fnmatch
import importlib.util
import tomllib
from pathlib import Path

import dockerfile
import pytest

from blog import roles
from blog.domains import HTTP_SERVICES
from tests.deploy.checks import (
    CONFIG_MOUNT,
    ROOT,
    Container,
    built,
    check_probe,
    environment_names_the_app_reads,
)

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(DOCKERFILE))


def stages() -> list[list[dockerfile.Command]]:
    result: list[list[dockerfile.Command]] = []
    for command in instructions():
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


def runtime() -> list[dockerfile.Command]:
    return stages()[-1]


def last(stage: list[dockerfile.Command], cmd: str) -> dockerfile.Command:
    found = [c for c in stage if c.cmd == cmd]
    assert found, f"the runtime stage has no {cmd}"
    return found[-1]


def test_a_build_stage_then_a_slim_runtime_that_installs_its_wheels() -> None:
    build, *_, final = stages()
    assert len(stages()) >= 2
    build_name = build[0].value[-1]
    assert build[0].value[1].upper() == "AS", "name the build stage"
    assert "slim" in final[0].value[0], "the runtime starts from a slim image"
    assert any(f"from={build_name}" in ",".join(c.flags) for c in final), (
        "the runtime takes the build stage's wheels"
    )
    installs = " ".join(" ".join(c.value) for c in final if c.cmd == "RUN")
    assert "--no-index" in installs, "the runtime installs only the wheels it was given"
    assert not any(tool in installs for tool in ("gcc", "build-essential", "apt-get install"))


def test_the_runtime_runs_as_a_user_that_is_not_root() -> None:
    user = last(runtime(), "USER").value[0].split(":")[0]
    assert user not in ("root", "0"), f"USER {user}"


def test_every_process_is_a_role_of_the_launcher() -> None:
    entrypoint = last(runtime(), "ENTRYPOINT")
    assert entrypoint.json and list(entrypoint.value) == ["python", "-m", "blog.roles"]
    default = last(runtime(), "CMD")
    assert default.json and len(default.value) == 1 and default.value[0] in roles.ROLES


def test_the_health_check_asks_the_role_that_runs() -> None:
    check = last(runtime(), "HEALTHCHECK")
    assert check.value[0] == "CMD" and list(check.value[1:]) == [
        "python",
        "-m",
        "blog.roles",
        "healthcheck",
    ]


def test_it_exposes_the_ports_its_roles_serve(tmp_path: Path) -> None:
    from tests.support import make_config

    config = make_config(tmp_path)
    ports = {role.port(config) for role in roles.ROLES.values()} - {None}
    exposed = {int(p) for c in runtime() if c.cmd == "EXPOSE" for p in c.value}
    assert exposed == ports


def test_no_secret_is_baked_in() -> None:
    secrets = environment_names_the_app_reads() - {
        "BLOG_CONFIG",
        "BLOG_SERVER_WORKERS",
        "BLOG_INSTANCE_URL",
        "BLOG_INSTANCE_NAME",
        "POD_IP",
    }
    for command in instructions():
        if command.cmd in ("ENV", "ARG"):
            names = command.value[::2] if command.cmd == "ENV" else command.value
            for name in names:
                name = name.split("=")[0]
                assert name not in secrets, f"{command.original}: a secret in the image"
                assert not any(w in name for w in ("PASSWORD", "SECRET", "TOKEN")), name


# --------------------------------------------------------------------------- build context


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _match(pattern: list[str], path: list[str]) -> bool:
    """Go's filepath.Match per path segment, with ``**`` for any number of segments."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_match(pattern[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatch.fnmatchcase(path[0], pattern[0]) and _match(pattern[1:], path[1:])


def in_context(relative: str) -> bool:
    """Does ``docker build`` send this file? (the last .dockerignore pattern that matches the
    file or a folder above it decides; ``!`` takes it back in)."""
    parts = relative.strip("/").split("/")
    included = True
    for rule in dockerignore():
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").strip("/").split("/")
        if any(_match(pattern, parts[:n]) for n in range(1, len(parts) + 1)):
            included = negated
    return included


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_secret() -> None:
    for command in instructions():
        if command.cmd == "COPY" and not any(f.startswith("--from") for f in command.flags):
            for source in command.value[:-1]:
                path = ROOT / source
                assert path.exists(), f"{command.original}: {source} does not exist"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                for file in files:
                    relative = str(file.relative_to(ROOT))
                    if "__pycache__" not in relative:
                        assert in_context(relative), f"{relative}: .dockerignore leaves it out"
    for secret in (".env", "deploy/k8s/base/secrets.env", "instance/blog.db", ".git/config"):
        assert not in_context(secret), f"{secret} would be sent to the builder"


def test_the_image_packages_every_module_a_role_runs(tmp_path: Path) -> None:
    """The image installs the project's wheel: every module a role runs is in a package
    setuptools includes, and the extras the Dockerfile names exist."""
    from tests.support import make_config

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = project["tool"]["setuptools"]["packages"]["find"]["include"]
    config = make_config(tmp_path)
    modules = {"blog.wsgi", "blog.roles", *(f"extracted.{d}.wsgi" for d in HTTP_SERVICES)}
    for role in roles.ROLES.values():
        argv = role.argv(config)
        if "-m" in argv:
            modules.add(argv[argv.index("-m") + 1])
    for module in sorted(modules):
        assert importlib.util.find_spec(module) is not None, module
        top = module.split(".")[0]
        if (ROOT / top).is_dir():  # ours, not a dependency (flask, granian)
            assert any(fnmatch.fnmatchcase(top, pattern) for pattern in included), (
                f"{module}: setuptools packages only {included}"
            )
    extras = project["project"]["optional-dependencies"]
    builds = " ".join(" ".join(c.value) for c in instructions() if c.cmd == "RUN")
    for extra in ("postgres", "mysql"):
        assert extra in extras and "[postgres,mysql]" in builds


@pytest.mark.parametrize("role", ["monolith"])
def test_the_config_it_ships_serves_the_monolith(role: str, tmp_path: Path) -> None:
    """``docker run strangler-blog`` alone: the image's own config, no variable set."""
    (copy,) = [c for c in runtime() if c.cmd == "COPY" and c.value[-1] == CONFIG_MOUNT]
    box = Container(
        where="Dockerfile",
        role=role,
        environ={"BLOG_CONFIG": CONFIG_MOUNT},
        config_text=(ROOT / copy.value[0]).read_text(),
    )
    with built(box, tmp_path) as process:
        health = roles.ROLES[role].health_path
        assert health is not None
        check_probe(box, process, health, roles.ROLES[role].port(process.config))
