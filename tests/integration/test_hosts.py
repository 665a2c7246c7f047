"""The hosts lab for real (root only; skipped otherwise, failed under BLOG_REQUIRE_SERVICES=1).

- A link at 5 ms: a call through the delay proxy takes at least 5 ms more than through the same
  proxy at 0 ms, and at most 5 ms plus the proxy's own cost (the 0 ms path minus the direct
  one, measured in the same run); a new connection pays one more RTT for its handshake.
- ``flask --app blog hosts up`` as a user runs it (posts on a host of its own, 5 ms away, with
  bandwidth and loss shaping so a qdisc and an nftables table exist): the walkthrough works
  through 127.0.0.1, the post page pays the link; ``hosts down`` then leaves no namespace,
  interface, nftables table or process of the lab's behind.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blog.config import PROJECT_ROOT
from blog.hosts.netns import namespace_inode, namespaces
from lab.linkprobe import measure_link
from tests.hostslab import lab_name, require_hosts
from tests.support import free_port

RTT_MS = 5.0
ATTEMPTS = 3
"""The bounds hold on a quiet machine; on one shared with other work a run can be disturbed,
so the measurement (never the bound) is taken again, up to this many times."""


@pytest.fixture(autouse=True)
def _root_only() -> None:
    require_hosts()


def test_a_link_adds_its_rtt_and_not_more_than_the_proxy_costs() -> None:
    before = set(namespaces())
    results = []
    for _ in range(ATTEMPTS):
        result = measure_link(RTT_MS, samples=200, new_connection_samples=30)
        results.append(result)
        if 0 <= result["excess_us"] <= result["proxy_cost_us"]:
            break
    assert set(namespaces()) == before, "the probe left namespaces behind"
    summary = [
        {k: round(r[k]) for k in ("proxy_cost_us", "added_us", "excess_us")} for r in results
    ]
    # at least the RTT more than the same call through the proxy at 0 ms...
    assert result["added_us"] >= RTT_MS * 1000, summary
    # ...and at most the RTT plus what the proxy costs by itself (at 0 ms, against no proxy)
    assert result["added_us"] <= RTT_MS * 1000 + result["proxy_cost_us"], summary
    delayed = f"proxy at {RTT_MS:g} ms"
    kept, fresh = result["paced"][delayed]["p50"], result["new_connection"][delayed]["p50"]
    assert fresh >= 2 * RTT_MS * 1000, "a new connection: the handshake, then the call"
    assert fresh - kept >= RTT_MS * 1000, "a new connection costs one more round trip"


def _flask(*args: str, config: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BLOG_CONFIG": str(config)}
    command = [sys.executable, "-m", "flask", "--app", "blog", "hosts", *args]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _root_view() -> dict[str, Any]:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    addresses = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True)
    return {
        "links": sorted(line.split(":")[1].strip() for line in links.stdout.splitlines()),
        "nft": tables.stdout,
        "lab_addresses": [line for line in addresses.stdout.splitlines() if " 198.1" in line],
    }


class Api:
    """The monolith as the root namespace sees it: 127.0.0.1:<port>, through the forwarder."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], Any]:
        payload = None if body is None else json.dumps(body).encode()
        sent = {**(headers or {}), **({"Content-Type": "application/json"} if payload else {})}
        self.connection.request(method, path, body=payload, headers=sent)
        response = self.connection.getresponse()
        data = response.read()
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers_out, json.loads(data) if data else None


@pytest.fixture
def hosts_up(tmp_path: Path) -> Iterator[dict[str, Any]]:
    lab = lab_name()
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "env": "testing",
                "database_url": f"sqlite:///{tmp_path}/blog.db",
                "log_level": "WARNING",
                "auth": {"bcrypt_rounds": 4},
                "images": {"local_dir": str(tmp_path / "images")},
                "rate_limits": {"enabled": False},
                "server": {"name": "granian", "workers": 1, "threads": 4},
                "services": {
                    "posts": {"mode": "http", "database_url": f"sqlite:///{tmp_path}/posts.db"}
                },
            }
        )
    )
    port = free_port()
    before = _root_view()
    args = ["--lab", lab, "--state-dir", str(state)]
    try:
        _flask(
            "up",
            *("--rtt-ms", str(RTT_MS), "--bandwidth-mbit", "1000", "--loss-percent", "0.001"),
            *("--port", str(port), "--workers", "1"),
            *args,
            config=config,
        )
        yield {"lab": lab, "port": port, "config": config, "state": state, "args": args}
    finally:
        _flask("down", *args, config=config, check=False)
        for name in namespaces():  # whatever a failed down left: never leave a namespace
            if name.startswith(f"sb-{lab}-"):
                subprocess.run(["ip", "netns", "del", name], check=False)
    assert _root_view() == before


def test_hosts_up_serves_across_hosts_and_down_leaves_nothing(hosts_up: dict[str, Any]) -> None:
    lab, config, args = hosts_up["lab"], hosts_up["config"], hosts_up["args"]
    state = json.loads((hosts_up["state"] / "state.json").read_text())
    ours = [n for n in namespaces() if n.startswith(f"sb-{lab}-")]
    assert sorted(ours) == sorted(f"sb-{lab}-{h}" for h in ("infra", "monolith", "posts"))
    assert _root_view()["lab_addresses"] == [], "the root namespace got a lab address"
    shaped = subprocess.run(
        ["ip", "netns", "exec", f"sb-{lab}-posts", "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sb_lab" in shaped.stdout
    qdisc = subprocess.run(
        ["tc", "-n", f"sb-{lab}-posts", "qdisc", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "tbf" in qdisc.stdout

    api = Api(hosts_up["port"])
    account = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}
    assert api.call("POST", "/api/register", account)[0] == 201
    _, _, token = api.call("POST", "/api/login", {k: account[k] for k in ("email", "password")})
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    status, _, post = api.call("POST", "/api/posts", {"title": "t", "body": "b"}, bearer)
    assert status == 201, post
    for _ in range(3):  # the first may open the connection (two round trips)
        status, headers, page = api.call("GET", f"/api/posts/{post['id']}")
    assert status == 200 and page["author"]["name"] == "Ada"
    timing = {entry.split(";")[0]: entry for entry in headers["server-timing"].split(", ")}
    posts_ms = float(timing["posts.get_post_with_comments"].split("dur=")[1].split(";")[0])
    assert posts_ms >= RTT_MS, timing  # one hop across the 5 ms link
    _, _, health = api.call("GET", "/api/health")
    assert health["domains"]["posts"]["mode"] == "http"
    assert health["domains"]["posts"]["instances"][0]["url"].startswith("http://198.18.0.")
    api.connection.close()
    assert "posts" in _flask("status", *args, config=config).stdout

    inodes = [namespace_inode(n) for n in ours]
    down = _flask("down", *args, config=config)
    assert "removed namespace" in down.stdout
    assert not [n for n in namespaces() if n.startswith(f"sb-{lab}-")]
    for record in state["processes"]:
        assert _gone(record["pid"], record["start"]), record
    assert not _processes_in(set(inodes)), "a process still lives in a lab namespace"
    assert not (hosts_up["state"] / "state.json").exists()


def _gone(pid: int, started: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] == "Z" or int(fields[19]) != started


def _processes_in(inodes: set[int | None]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns" / "net").stat().st_ino in inodes:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
