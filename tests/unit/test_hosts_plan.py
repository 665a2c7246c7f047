"""The hosts lab's plan and settings, without root: which hosts, which addresses, which
backends are forwarded, the config the hosts run with; the ``network`` section's validation;
the transport's keep-alive switch; the relay's delay arithmetic."""

from __future__ import annotations

import ipaddress
import random
import socket
from pathlib import Path

import pytest
import yaml

from blog.config import ConfigError, load_config
from blog.hosts.plan import INFRA_ADDRESS, effective_link, plan_hosts
from blog.hosts.relay import Link
from blog.transport import WireRequest
from blog.transport.http import PooledHttpTransport
from tests.support import ScriptedServer, make_config

LAB = ipaddress.ip_network("198.18.0.0/15")


def _extracted(tmp_path: Path, **extra: object) -> object:
    services = {
        "auth": {
            "mode": "http",
            "database_url": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        },
        "images": {"mode": "http"},
        "email": {"mode": "extracted"},
    }
    return make_config(
        tmp_path,
        services=services,
        events={"broker": "rabbitmq", "rabbitmq_url": "amqp://guest:guest@localhost/%2F"},
        **extra,
    )


def test_every_process_gets_a_host_with_a_lab_address(tmp_path: Path) -> None:
    plan = plan_hosts(_extracted(tmp_path), lab="x", scale={"images": 2})  # type: ignore[arg-type]
    names = [h.name for h in plan.hosts]
    assert names == ["monolith", "auth", "images-1", "images-2", "email"]
    addresses = [h.address for h in plan.hosts]
    assert len(set(addresses)) == len(addresses)
    assert all(ipaddress.ip_address(a) in LAB for a in [*addresses, INFRA_ADDRESS])
    assert {h.namespace for h in plan.hosts} == {f"sb-x-{n}" for n in names}
    assert all(len(h.veth) <= 15 for h in plan.hosts)
    images = [h for h in plan.hosts if h.domain == "images"]
    assert {h.port for h in images} == {3003}  # one port, two hosts: as two machines would


def test_the_hosts_config_names_hosts_and_reaches_the_root_namespace_through_infra(
    tmp_path: Path,
) -> None:
    plan = plan_hosts(_extracted(tmp_path), lab="x", scale={"images": 2})  # type: ignore[arg-type]
    config = plan.config
    assert config["services"]["images"]["urls"] == [
        h.url for h in plan.hosts if h.domain == "images"
    ]
    assert config["services"]["auth"]["url"] == next(h.url for h in plan.hosts if h.name == "auth")
    assert config["services"]["auth"]["database_url"] == (
        f"postgresql+psycopg://postgres@{INFRA_ADDRESS}:5432/test"
    )
    assert config["events"]["rabbitmq_url"] == f"amqp://guest:guest@{INFRA_ADDRESS}:5672/%2F"
    ports = {b.port for b in plan.backends}
    assert {5432, 5672} <= ports
    assert "127.0.0.1" not in yaml.safe_dump(config["services"]["auth"])
    assert config["database_url"].startswith("sqlite:////")  # a file: no network, kept
    written = tmp_path / "hosts.yaml"
    written.write_text(yaml.safe_dump(config))
    reloaded = load_config(written)  # the file every host reads is a valid config
    assert reloaded.services["images"].instance_urls() == config["services"]["images"]["urls"]


def test_registry_instances_register_under_the_labs_own_prefix(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, services={"posts": {"mode": "http"}}, discovery={"kind": "registry"}
    )
    plan = plan_hosts(config, lab="x")
    registry = plan.config["discovery"]["registry"]
    assert registry["prefix"].endswith("/x/")
    assert registry["url"] == f"http://{INFRA_ADDRESS}:2379"


def test_dns_discovery_becomes_static_and_says_so(tmp_path: Path) -> None:
    config = make_config(tmp_path, services={"posts": {"mode": "http"}}, discovery={"kind": "dns"})
    plan = plan_hosts(config, lab="x")
    assert plan.config["discovery"]["kind"] == "static"
    assert any("dns" in note for note in plan.notes)


def test_scale_and_lab_names_are_checked(tmp_path: Path) -> None:
    config = make_config(tmp_path, services={"posts": {"mode": "http"}})
    with pytest.raises(ConfigError, match="--scale images"):
        plan_hosts(config, scale={"images": 2})
    with pytest.raises(ConfigError, match="lab name"):
        plan_hosts(config, lab="no spaces")


def test_links_take_the_domains_settings_then_the_command_line(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        services={"posts": {"mode": "http"}, "images": {"mode": "http"}},
        network={"rtt_ms": 1, "domains": {"images": {"rtt_ms": 10, "loss_percent": 0.5}}},
    )
    plan = plan_hosts(config)
    links = {h.name: h.link for h in plan.services()}
    assert links["posts"] is not None and links["posts"].rtt_ms == 1
    assert links["images"] is not None and links["images"].rtt_ms == 10
    assert links["images"].loss_percent == 0.5
    assert effective_link(config.network, "images", {"rtt_ms": 2}).rtt_ms == 2


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"rtt_ms": 1, "jitter_ms": 2}, "jitter_ms: at most rtt_ms"),
        ({"rtt_ms": -1}, "must not be negative"),
        ({"loss_percent": 100}, "loss_percent"),
        ({"bandwidth_mbit": 0}, "bandwidth_mbit"),
        ({"domains": {"nowhere": {"rtt_ms": 1}}}, "network.domains.nowhere: unknown domain"),
        ({"domains": {"images": {"rtt": 1}}}, "network.domains.images.rtt: unknown key"),
        ({"domains": {"images": {"rtt_ms": "far"}}}, "expected a number"),
        ({"domains": {"images": {"rtt_ms": 1, "jitter_ms": 3}}}, "network.domains.images."),
    ],
)
def test_the_network_section_is_validated(
    tmp_path: Path, network: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_config(tmp_path, network=network)


def test_a_links_jitter_stays_within_its_rtt() -> None:
    link, rng = Link(rtt_ms=10, jitter_ms=4), random.Random(1)
    trips = [link.round_trip(rng) * 1000 for _ in range(2000)]
    assert min(trips) >= 6 and max(trips) <= 14
    assert 9.8 < sum(trips) / len(trips) < 10.2
    assert Link(rtt_ms=0.5).one_way(rng) == 0.00025


def _answer_closing_when_asked(client: socket.socket, request: bytes) -> bool:
    close = b"connection: close" in request.lower()
    client.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + b"\r\n{}"
    )
    return not close


@pytest.mark.parametrize(("keep_alive", "connections"), [(True, 1), (False, 3)])
def test_keep_alive_can_be_switched_off(keep_alive: bool, connections: int) -> None:
    server = ScriptedServer(_answer_closing_when_asked)
    transport = PooledHttpTransport(
        f"http://127.0.0.1:{server.port}",
        connect_timeout=1,
        read_timeout=2,
        keep_alive=keep_alive,
    )
    try:
        for _ in range(3):
            assert transport.send(WireRequest("GET", "/x", "probe.read", True)).status == 200
    finally:
        transport.close()
        server.close()
    assert len(server.connections) == connections
    closing = [(b"connection: close" in h.lower()) for c in server.connections for h in c]
    assert closing == [not keep_alive] * 3


def test_hosts_up_says_plainly_that_it_needs_root(runner, monkeypatch) -> None:
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = runner.invoke(args=["hosts", "up", "--rtt-ms", "2"])
    assert result.exit_code == 1
    assert "needs root" in result.output and "sudo" in result.output
