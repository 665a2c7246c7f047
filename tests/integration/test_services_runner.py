"""``flask --app blog services``: every http service up under gunicorn, and all of them gone
again after one Ctrl-C (or one SIGTERM to the runner alone). With two workers each on fresh SQLite
files, neither worker may fail to boot over creating the tables."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from blog import create_app
from tests.support import eventually, free_port, make_config

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).with_name("flask")
SERVICES = ("auth", "payments")


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw.rsplit(")", 1)[1].split()


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def write_config(
    tmp_path: Path, ports: dict[str, int], server: str = "granian", workers: int = 1
) -> Path:
    services = {
        name: {
            "mode": "http" if name in ports else "inprocess",
            "url": f"http://127.0.0.1:{ports.get(name, free_port())}",
            "port": ports.get(name, free_port()),
            "database_url": f"sqlite:///{tmp_path}/{name}-service.db",
        }
        for name in ("auth", "posts", "images", "payments")
    }
    config = {
        "env": "testing",
        "log_level": "INFO",
        "database_url": f"sqlite:///{tmp_path}/blog.db",
        "auth": {"bcrypt_rounds": 4},
        "images": {"local_dir": str(tmp_path / "images")},
        "services": services,
        "server": {"name": server, "workers": workers, "threads": 4},
    }
    path = tmp_path / "config.yaml"
    path.write_text("# services-runner test\n" + yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("stop", "server", "workers"),
    [
        ("ctrl-c to the group", "granian", 1),
        ("sigterm to the runner alone", "granian", 2),
        ("sigterm to the runner alone", "gunicorn", 2),
        ("ctrl-c to the group", "waitress", 1),
    ],
)
def test_services_run_until_stopped_and_leave_nothing_behind(
    tmp_path: Path, stop: str, server: str, workers: int
) -> None:
    ports = {name: free_port() for name in SERVICES}
    config_path = write_config(tmp_path, ports, server, workers)
    log_path = tmp_path / "runner.log"
    env = {**os.environ, "BLOG_CONFIG": str(config_path)}
    with log_path.open("wb") as log:
        runner = subprocess.Popen(
            [str(FLASK), "--app", "blog", "services"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> None:
            assert runner.poll() is None, log_path.read_text()
            for name, port in ports.items():
                try:
                    response = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                except requests.RequestException as exc:
                    raise AssertionError(f"{name} not up yet: {exc}") from None
                assert response.status_code == 200
                assert response.json()["service"] == name

        eventually(healthy, timeout=60, interval=0.1)

        def every_worker_up() -> None:  # each worker says so once it serves
            lines = log_path.read_text().splitlines()
            for name in SERVICES:
                ours = [line for line in lines if line.startswith(f"{name:<8} | ")]
                assert sum(" serving extracted." in line for line in ours) == workers

        eventually(every_worker_up, timeout=30, interval=0.1)
        tree = descendants(runner.pid)

        if stop == "ctrl-c to the group":
            os.killpg(runner.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        else:
            runner.send_signal(signal.SIGTERM)  # the runner must pass it on itself
        assert runner.wait(timeout=30) == 0, log_path.read_text()

        def all_gone() -> None:
            assert [pid for pid in tree if alive(pid)] == []

        eventually(all_gone, timeout=5)
        lines = log_path.read_text().splitlines()
        for name in SERVICES:
            ours = [line for line in lines if line.startswith(f"{name:<8} | ")]
            assert sum(" serving extracted." in line for line in ours) == workers, "\n".join(lines)
            assert not any("Traceback" in line for line in ours), "\n".join(lines)
        assert "all services stopped" in lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)


def test_without_http_services_there_is_nothing_to_start(tmp_path: Path) -> None:
    app = create_app(make_config(tmp_path))
    try:
        result = app.test_cli_runner().invoke(args=["services"])
    finally:
        app.extensions["blog.runtime"].close()
    assert result.exit_code == 0
    assert "No service is in http mode" in result.output


def test_a_scaled_service_keeps_serving_while_one_instance_is_down(tmp_path: Path) -> None:
    """``--scale posts=3``: three instances on consecutive ports; one killed (by a stdin command,
    then by a crash from outside) leaves the others serving, and ``start`` brings it back."""
    base = free_port()
    while any(_taken(port) for port in range(base, base + 3)):
        base = free_port()
    config_path = write_config(tmp_path, {"posts": base})
    log_path = tmp_path / "runner.log"
    with log_path.open("wb") as log:
        runner = subprocess.Popen(
            [str(FLASK), "--app", "blog", "services", "--scale", "posts=3"],
            cwd=ROOT,
            env={**os.environ, "BLOG_CONFIG": str(config_path)},
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert runner.stdin is not None
    ports = [base, base + 1, base + 2]

    def healthy(expected: list[int]) -> None:
        up = []
        for port in ports:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    up.append(port)
        assert up == expected, log_path.read_text()

    def said(text: str) -> None:
        assert text in log_path.read_text(), log_path.read_text()

    try:
        eventually(lambda: healthy(ports), timeout=60, interval=0.1)
        runner.stdin.write(b"kill posts-2\n")
        runner.stdin.flush()
        eventually(lambda: said("posts-2 | killed"))
        eventually(lambda: healthy([ports[0], ports[2]]))
        runner.stdin.write(b"start posts-2\n")
        runner.stdin.flush()
        eventually(lambda: healthy(ports), timeout=30)

        crashed = next(pid for pid in descendants(runner.pid) if _listens(pid, ports[2]))
        for pid in [*descendants(crashed), crashed]:  # the instance crashes, workers and all
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        eventually(lambda: said("posts-3 | exited with status"), timeout=15)
        said("still running")
        healthy_now = [ports[0], ports[1]]
        eventually(lambda: healthy(healthy_now))
        assert runner.poll() is None  # the supervisor carries on with the others

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 0, log_path.read_text()
        said("all services stopped")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        runner.stdin.close()


def test_instances_that_would_share_a_port_are_refused(tmp_path: Path) -> None:
    port = free_port()
    config_path = write_config(tmp_path, {"posts": port, "payments": port + 1})
    result = subprocess.run(
        [str(FLASK), "--app", "blog", "services", "--scale", "posts=2"],
        cwd=ROOT,
        env={**os.environ, "BLOG_CONFIG": str(config_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "payments and posts-2 would both listen on port" in result.stderr + result.stdout


def _taken(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _listens(pid: int, port: int) -> bool:
    """Whether ``pid`` is the server process that bound ``port`` (its command line says so)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(port).encode() in command and b"granian" in b" ".join(command)
