"""Service discovery with real processes: the registry (a real etcd), static lists and DNS, and
the balancer spreading calls, ejecting a dead instance and retrying only what is safe."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blog.discovery.etcd import EtcdGateway
from blog.posts import PostsUnavailable
from blog.serving import ServerProcess, free_port, service_process
from blog.wiring import Monolith, build_monolith
from tests.support import eventually, make_config, require_service

ETCD = "http://127.0.0.1:2379"
LEASE = 2  # seconds: short, so expiry after a crash is quick to see


@pytest.fixture
def prefix() -> Iterator[str]:
    """This test's own key prefix in the machine's etcd, deleted afterwards."""
    require_service("etcd", 2379, "make registry (or: apt-get install etcd-server)")
    prefix = f"/strangler-blog-test-{uuid.uuid4().hex[:10]}/"
    yield prefix
    EtcdGateway(ETCD).delete_prefix(prefix)


def discovery(prefix: str, registry_url: str = ETCD) -> dict[str, Any]:
    return {
        "kind": "registry",
        "ejection_seconds": 30,
        "registry": {"url": registry_url, "prefix": prefix, "lease_seconds": LEASE},
    }


class Posts:
    """Posts instances sharing one database, as one service scaled out."""

    def __init__(self, tmp_path: Path, **extra: Any) -> None:
        self.dir = tmp_path / "posts-service"
        self.dir.mkdir(exist_ok=True)
        self.database_url = f"sqlite:///{self.dir}/posts.db"
        self.config_path = self.dir / "config.yaml"
        settings = {
            "env": "testing",
            "log_level": "INFO",
            "services": {"posts": {"database_url": self.database_url}},
            **extra,
        }
        self.config_path.write_text(yaml.safe_dump(settings))
        self.instances: list[ServerProcess] = []

    def start(self, host: str = "127.0.0.1", port: int | None = None) -> ServerProcess:
        port = port or free_port()
        name = f"posts-{len(self.instances) + 1}"
        instance = service_process(
            "posts",
            name=name,
            host=host,
            port=port,
            workers=1,
            config_path=self.config_path,
            output=self.dir / f"{name}.log",
            env={"BLOG_INSTANCE_URL": f"http://{host}:{port}", "BLOG_INSTANCE_NAME": name},
        )
        self.instances.append(instance)
        return instance.start()

    def stop(self) -> None:
        for instance in self.instances:
            instance.kill()


@pytest.fixture
def posts(tmp_path: Path) -> Iterator[Posts]:
    service = Posts(tmp_path)
    yield service
    service.stop()


def registered(prefix: str) -> dict[str, str]:
    _, found = EtcdGateway(ETCD).range_prefix(prefix)
    return {kv.key[len(prefix) :]: json.loads(kv.value)["url"] for kv in found}


def monolith(tmp_path: Path, **extra: Any) -> Monolith:
    tmp_path.mkdir(exist_ok=True)
    settings = {"services": {"posts": {"mode": "http"}}, **extra}
    runtime = build_monolith(make_config(tmp_path, **settings))
    runtime.start()
    return runtime


def instances_seen(runtime: Monolith) -> list[dict[str, Any]]:
    health = runtime.registry.posts.health()
    return list(health["instances"])


# --------------------------------------------------------------------------- the registry


def test_an_instance_registers_and_goes_at_once_when_it_stops(prefix, tmp_path):
    service = Posts(tmp_path, discovery=discovery(prefix))
    try:
        first = service.start()
        eventually(lambda: _equal(registered(prefix), {"posts/posts-1": first.url}), timeout=10)
        first.stop()  # graceful: the lease is revoked, not left to expire
        assert registered(prefix) == {}
    finally:
        service.stop()


def test_a_crashed_instance_goes_when_its_lease_expires(prefix, tmp_path):
    service = Posts(tmp_path, discovery=discovery(prefix))
    try:
        crashing = service.start()
        eventually(lambda: _equal(len(registered(prefix)), 1), timeout=10)
        crashing.kill()
        assert len(registered(prefix)) == 1  # nobody said goodbye...
        eventually(lambda: _equal(registered(prefix), {}), timeout=LEASE * 3)  # ...lease ran out
    finally:
        service.stop()


def test_calls_spread_over_three_instances_and_a_killed_one_costs_no_safe_call(prefix, tmp_path):
    service = Posts(tmp_path, discovery=discovery(prefix))
    runtime = None
    try:
        for _ in range(3):
            service.start()
        eventually(lambda: _equal(len(registered(prefix)), 3), timeout=15)
        runtime = monolith(tmp_path / "monolith", discovery=discovery(prefix))
        posts = runtime.registry.posts
        eventually(lambda: _equal(len(instances_seen(runtime)), 3))
        post = posts.create_post(1, "Ada", "first", "body")
        for _ in range(60):
            assert posts.get_post(post.id) == post
        calls = [i["calls"] for i in instances_seen(runtime)]
        assert all(count > 0 for count in calls), calls  # every instance took its share

        service.instances[1].kill()  # a crash, mid-load
        failed_reads, created, unavailable = 0, [], 0
        for n in range(60):
            try:
                posts.get_post(post.id)
            except PostsUnavailable:
                failed_reads += 1
            try:
                created.append(posts.create_post(1, "Ada", f"write {n}", "body").title)
            except PostsUnavailable:
                unavailable += 1  # an unsafe write that met the dead instance: not retried
        assert failed_reads == 0  # a read that failed on the dead instance was retried elsewhere
        titles = [p.title for p in posts.list_posts(per_page=100).items]
        assert len(titles) == len(set(titles))  # nothing was written twice
        assert set(created) <= set(titles)
        assert len(created) + unavailable == 60
        dead = next(i for i in instances_seen(runtime) if i["url"] == service.instances[1].url)
        assert dead["state"] == "ejected" or dead not in instances_seen(runtime)
        eventually(lambda: _equal(len(instances_seen(runtime)), 2), timeout=LEASE * 3)
    finally:
        if runtime is not None:
            runtime.close()
        service.stop()


def test_a_registry_outage_keeps_the_last_known_instances(prefix, tmp_path):
    """The monolith reads etcd through a proxy this test can cut."""
    service = Posts(tmp_path, discovery=discovery(prefix))
    proxy = TcpProxy(2379)
    runtime = None
    try:
        service.start()
        eventually(lambda: _equal(len(registered(prefix)), 1), timeout=10)
        runtime = monolith(tmp_path / "monolith", discovery=discovery(prefix, proxy.url))
        eventually(lambda: _equal(len(instances_seen(runtime)), 1))
        post = runtime.registry.posts.create_post(1, "Ada", "t", "b")

        proxy.close()  # the registry is gone for the monolith
        eventually(lambda: _assert(runtime.registry.posts.health()["registry"] != "up"))
        assert runtime.registry.posts.get_post(post.id) == post  # still served

        second = service.start()  # registers while the monolith cannot see the registry
        proxy.open()
        eventually(
            lambda: _assert(second.url in [i["url"] for i in instances_seen(runtime)]), timeout=15
        )
        assert runtime.registry.posts.health()["registry"] == "up"
    finally:
        if runtime is not None:
            runtime.close()
        proxy.close()
        service.stop()


def test_a_monolith_started_while_the_registry_is_down_picks_instances_up_later(prefix, tmp_path):
    service = Posts(tmp_path, discovery=discovery(prefix))
    proxy = TcpProxy(2379, listening=False)
    runtime = None
    try:
        runtime = monolith(tmp_path / "monolith", discovery=discovery(prefix, proxy.url))
        health = runtime.registry.posts.health()
        assert health["registry"].startswith("down")
        with pytest.raises(PostsUnavailable, match="no posts instance is known"):
            runtime.registry.posts.list_posts()  # zero instances: 503 naming the domain
        service.start()
        proxy.open()
        eventually(lambda: _equal(len(instances_seen(runtime)), 1), timeout=15)
        assert runtime.registry.posts.list_posts().total == 0
    finally:
        if runtime is not None:
            runtime.close()
        proxy.close()
        service.stop()


def test_a_malformed_entry_is_ignored_with_a_warning(prefix, tmp_path, caplog):
    gateway = EtcdGateway(ETCD)
    gateway.put(f"{prefix}posts/broken", b"not json")
    gateway.put(f"{prefix}posts/no-url", json.dumps({"health": "x"}).encode())
    gateway.put(f"{prefix}posts/ftp", json.dumps({"url": "ftp://127.0.0.1:21"}).encode())
    gateway.put(f"{prefix}posts-without-instance", b"{}")
    service = Posts(tmp_path, discovery=discovery(prefix))
    runtime = None
    try:
        good = service.start()
        runtime = monolith(tmp_path / "monolith", discovery=discovery(prefix))
        eventually(lambda: _equal([i["url"] for i in instances_seen(runtime)], [good.url]))
        assert "ignoring malformed entry" in caplog.text
        gateway.put(f"{prefix}posts/later", b"[1, 2]")  # through the watch this time
        eventually(lambda: _assert(caplog.text.count("ignoring malformed entry") >= 4))
        assert [i["url"] for i in instances_seen(runtime)] == [good.url]
    finally:
        if runtime is not None:
            runtime.close()
        service.stop()


# --------------------------------------------------------------------------- static and dns


def test_static_discovery_spreads_over_the_listed_urls(tmp_path, posts):
    first, second = posts.start(), posts.start()
    services = {"posts": {"mode": "http", "urls": [first.url, second.url]}}
    runtime = build_monolith(make_config(tmp_path, services=services))
    runtime.start()
    try:
        post = runtime.registry.posts.create_post(1, "Ada", "t", "b")
        for _ in range(20):
            runtime.registry.posts.get_post(post.id)
        seen = instances_seen(runtime)
        assert [i["url"] for i in seen] == [first.url, second.url]
        assert all(i["calls"] > 0 for i in seen)
        assert runtime.registry.posts.health()["discovery"] == "static"
    finally:
        runtime.close()


def test_dns_discovery_resolves_one_name_to_every_instance_and_again_later(tmp_path, posts):
    port = free_port()
    first = posts.start("127.0.0.1", port)
    second = posts.start("127.0.0.2", port)
    dns = TestNameServer({"posts.lab.test.": ["127.0.0.1", "127.0.0.2"]})
    settings = {
        "discovery": {"kind": "dns", "dns": {"nameserver": dns.address, "interval_seconds": 0.2}},
        "services": {"posts": {"mode": "http", "url": f"http://posts.lab.test:{port}"}},
    }
    runtime = build_monolith(make_config(tmp_path, **settings))
    runtime.start()
    try:
        assert sorted(i["url"] for i in instances_seen(runtime)) == [first.url, second.url]
        post = runtime.registry.posts.create_post(1, "Ada", "t", "b")
        for _ in range(20):
            runtime.registry.posts.get_post(post.id)
        assert all(i["calls"] > 0 for i in instances_seen(runtime))
        dns.records["posts.lab.test."] = ["127.0.0.2"]  # the name now resolves to one
        eventually(lambda: _equal([i["url"] for i in instances_seen(runtime)], [second.url]))
    finally:
        runtime.close()
        dns.close()


# --------------------------------------------------------------------------- helpers


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _assert(condition: bool) -> None:
    assert condition


class TcpProxy:
    """Forwards a local port to ``target`` until closed; ``open()`` serves again on the same
    port. What the monolith sees of a registry that goes away and comes back."""

    def __init__(self, target: int, listening: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._target = target
        self._server: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        if listening:
            self.open()

    def open(self) -> None:
        server = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()


class TestNameServer:
    """A DNS server on a loopback UDP port that answers A queries from ``records``."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, records: dict[str, list[str]]) -> None:
        from dnslib import QTYPE, RR, A, DNSRecord
        from dnslib.server import BaseResolver, DNSLogger, DNSServer

        self.records = records
        outer = self

        class Resolver(BaseResolver):  # type: ignore[misc]
            def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
                reply = request.reply()
                name = str(request.q.qname)
                if request.q.qtype == QTYPE.A:
                    for address in outer.records.get(name, []):
                        reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=1))
                return reply

        port = free_port()
        self.address = f"127.0.0.1:{port}"
        quiet = DNSLogger(log="-send,-recv,-request,-reply,-truncated,-error,-data")
        self._server = DNSServer(Resolver(), port=port, address="127.0.0.1", logger=quiet)
        self._server.start_thread()

    def close(self) -> None:
        self._server.stop()
        self._server.server.server_close()
