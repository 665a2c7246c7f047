"""``hosts up`` and ``hosts down``: build the plan's hosts for real, and remove them.

Everything ``up`` makes is written to a state file *before* it is made (a namespace, a qdisc, an
nftables table) or right after it starts (a process, with its start time so that a recycled pid
is never taken for ours). ``down`` reads that file and removes exactly those things, and nothing
else: a lab that failed half-way, or whose ``up`` was killed, comes down the same way.

Processes are started straight into their host: the thread that starts one steps into the host's
namespace first (``blog.hosts.netns.netns``), and a child is born in its parent thread's
namespace. The services' tables are prepared, and their health checked, from inside the host
too, so nothing in the root namespace ever dials a lab address.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from blog.config import PROJECT_ROOT, NetworkConfig, ServerConfig, load_config
from blog.hosts.netns import (
    HostsError,
    namespace_inode,
    namespaces,
    netns,
    processes_in,
    require_root,
    run,
    start_time,
)
from blog.hosts.plan import INFRA_ADDRESS, SUBNET, Host, Plan, effective_link, namespace_name
from blog.serving import (
    ServerProcess,
    init_monolith_tables,
    monolith_process,
    service_process,
)

STATE_FILE = "state.json"
NFT_TABLE = "sb_lab"
"""The lab's own nftables table (family inet) in a host's namespace: the loss rules."""
START_SECONDS = 90.0
STOP_SECONDS = 12.0
Say = Callable[[str], None]


def default_state_dir(lab: str) -> Path:
    return PROJECT_ROOT / "instance" / "hosts" / lab


class HostsLab:
    """A lab being built or torn down, and its state file (``<state_dir>/state.json``)."""

    def __init__(self, state_dir: Path, say: Say | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.say: Say = say or (lambda _line: None)
        self.state: dict[str, Any] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text(encoding="utf-8"))

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def exists(self) -> bool:
        return bool(self.state)

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        scratch = self.state_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.state, indent=2), encoding="utf-8")
        scratch.replace(self.state_file)

    def _record(self, kind: str, item: Any) -> None:
        self.state.setdefault(kind, []).append(item)
        self._save()

    # ------------------------------------------------------------------ up

    def up(self, plan: Plan, *, workers: int | None = None) -> None:
        """Build every host of ``plan`` and start its processes; on any failure, remove what
        was made and raise."""
        self.create(plan)
        try:
            self._start(plan, workers)
        except BaseException:
            self.say("start-up failed: removing what was made")
            self.down()
            raise

    def create(self, plan: Plan) -> None:
        """The namespaces, the bridge and the links of ``plan``, with no process yet (the lab's
        own measurements start what they need with :meth:`start_relay` and :meth:`spawn`); on
        any failure, remove what was made and raise."""
        require_root()
        if self.exists:
            raise HostsError(
                f"a lab is already recorded in {self.state_file}: run hosts down first"
            )
        existing = set(namespaces())
        taken = [
            n for n in [plan.infra_namespace, *(h.namespace for h in plan.hosts)] if n in existing
        ]
        if taken:
            raise HostsError(
                f"namespaces of a lab named {plan.lab!r} already exist ({', '.join(taken)}) "
                f"with no state file in {self.state_dir}: another copy runs (--lab names "
                "another), or one was left behind (ip netns del removes it)"
            )
        _check_port_free(plan.expose_port)
        for tool, needed in (
            ("tc", any(h.link and h.link.bandwidth_mbit for h in plan.hosts)),
            ("nft", any(h.link and h.link.loss_percent for h in plan.hosts)),
        ):
            if needed:
                run([tool, "--version"] if tool == "nft" else [tool, "-V"])
        self.state = {
            "lab": plan.lab,
            "subnet": str(SUBNET),
            "expose": f"http://127.0.0.1:{plan.expose_port}",
            "started_at": time.time(),
            "hosts": [_host_record(h) for h in plan.hosts],
            "backends": [{"port": b.port, "used_by": list(b.used_by)} for b in plan.backends],
            "namespaces": [],
            "processes": [],
            "relays": [],
        }
        self._save()
        try:
            self._network(plan)
        except BaseException:
            self.down()
            raise

    def _start(self, plan: Plan, workers: int | None) -> None:
        config_path = self.state_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(plan.config, sort_keys=False), encoding="utf-8")
        self.state["config"] = str(config_path)
        self._save()
        load_config(config_path)  # the file every host reads must load before anything starts
        self._forwarder(plan)
        services = plan.services()
        for host in services:
            self.start_proxy(host)
        server = _server(config_path, workers)
        with ThreadPoolExecutor(max_workers=max(1, min(len(services), 4))) as pool:
            for future in [pool.submit(self._service, h, config_path, server) for h in services]:
                future.result()
        self.start_monolith(plan.monolith, config_path, server=server)
        self._check_exposed(plan.expose_port)

    def _network(self, plan: Plan) -> None:
        infra = plan.infra_namespace
        self._add_namespace(infra)
        run(["ip", "link", "add", "br0", "type", "bridge"], namespace=infra)
        run(["ip", "addr", "add", f"{INFRA_ADDRESS}/{SUBNET.prefixlen}", "dev", "br0"], infra)
        run(["ip", "link", "set", "br0", "up"], namespace=infra)
        for host in plan.hosts:
            self._add_namespace(host.namespace)
            pair = ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0"]
            run([*pair, "netns", host.namespace], namespace=infra)
            run(["ip", "link", "set", host.veth, "master", "br0", "up"], namespace=infra)
            address = f"{host.address}/{SUBNET.prefixlen}"
            run(["ip", "addr", "add", address, "dev", "eth0"], namespace=host.namespace)
            run(["ip", "link", "set", "eth0", "up"], namespace=host.namespace)
            if host.link is not None:
                self.shape(host.name, host.link)
        self.say(
            f"network: {len(plan.hosts) + 1} namespaces on a bridge in {infra} ({SUBNET}); "
            "the root namespace has no lab address"
        )

    def _add_namespace(self, name: str) -> None:
        self._record("namespaces", name)
        run(["ip", "netns", "add", name])
        run(["ip", "link", "set", "lo", "up"], namespace=name)

    def _host(self, name: str) -> dict[str, Any]:
        for host in self.state["hosts"]:
            if host["name"] == name:
                return dict(host)
        raise HostsError(f"no host named {name!r} in this lab")

    # ------------------------------------------------------------------ links

    def shape(self, host_name: str, link: NetworkConfig) -> None:
        """Bandwidth (tc tbf on both ends of the host's veth) and loss (an nftables table of
        our own in its namespace), replacing what was there."""
        host = self._host(host_name)
        infra = namespace_name(self.state["lab"], "infra")
        ends = ((host["namespace"], "eth0"), (infra, host["veth"]))
        if link.bandwidth_mbit:
            rate = float(link.bandwidth_mbit)
            burst = max(64 * 1024, int(rate * 1e6 / 8 / 100))  # 10 ms of traffic, >= a GSO packet
            for namespace, device in ends:
                self._note_once("qdiscs", {"namespace": namespace, "device": device})
                tbf = ["rate", f"{rate:g}mbit", "burst", str(burst), "latency", "50ms"]
                run(["tc", "qdisc", "replace", "dev", device, "root", "tbf", *tbf], namespace)
        else:
            for namespace, device in ends:
                with contextlib.suppress(HostsError):  # none there
                    run(["tc", "qdisc", "del", "dev", device, "root"], namespace=namespace)
        namespace = host["namespace"]
        if link.loss_percent:
            per_million = round(float(link.loss_percent) * 10_000)
            self._note_once("nft_tables", {"namespace": namespace, "table": NFT_TABLE})
            rule = f"numgen random mod 1000000 < {per_million} drop"
            run(
                ["nft", "-f", "-"],
                namespace=namespace,
                stdin=(
                    f"table inet {NFT_TABLE} {{}}\n"
                    f"delete table inet {NFT_TABLE}\n"
                    f"table inet {NFT_TABLE} {{\n"
                    "  chain input {\n"
                    "    type filter hook input priority 0; policy accept;\n"
                    f'    iifname "eth0" {rule}\n'
                    "  }\n"
                    "  chain output {\n"
                    "    type filter hook output priority 0; policy accept;\n"
                    f'    oifname "eth0" {rule}\n'
                    "  }\n"
                    "}\n"
                ),
            )
        elif any(t["namespace"] == namespace for t in self.state.get("nft_tables", [])):
            with contextlib.suppress(HostsError):
                run(["nft", "delete", "table", "inet", NFT_TABLE], namespace=namespace)

    def _note_once(self, kind: str, item: dict[str, Any]) -> None:
        if item not in self.state.get(kind, []):
            self._record(kind, item)

    def set_links(
        self, overrides: Mapping[str, float | None], domains: list[str] | None = None
    ) -> list[str]:
        """Change the links of a running lab (every service host, or ``domains``' hosts):
        the relays re-read their RTT and jitter at once (SIGHUP), tc and nftables are
        replaced. Returns one line per link changed."""
        require_root()
        if not self.exists:
            raise HostsError(f"no lab recorded in {self.state_file}: hosts up first")
        changed = []
        for host in self.state["hosts"]:
            if host["link"] is None or (domains and host["domain"] not in domains):
                continue
            link = effective_link(NetworkConfig(**host["link"]), host["domain"], overrides)
            if link.jitter_ms > link.rtt_ms:
                raise HostsError(f"{host['name']}: the jitter must stay within the RTT")
            before = NetworkConfig(**host["link"])
            host["link"] = _link_record(link)
            self._save()
            shaping = ("bandwidth_mbit", "loss_percent")
            if any(getattr(before, k) != getattr(link, k) for k in shaping):
                self.shape(host["name"], link)
            waiting = []
            for relay in self.state["relays"]:
                if relay["host"] == host["name"]:
                    waiting.append(self._retune(relay, link))
            for applied, generation in waiting:
                _wait_for_generation(applied, generation)
            changed.append(f"{host['name']}: {describe_link(link)}")
        return changed

    def _retune(self, relay: dict[str, Any], link: NetworkConfig) -> tuple[Path, int]:
        """Write the relay's new links and tell it (SIGHUP); returns where and which
        generation it will acknowledge once it runs with them."""
        spec = Path(relay["spec"])
        document = json.loads(spec.read_text(encoding="utf-8"))
        for route in document["routes"]:
            route["rtt_ms"], route["jitter_ms"] = link.rtt_ms, link.jitter_ms
        document["generation"] = int(document.get("generation", 0)) + 1
        scratch = spec.with_suffix(".tmp")
        scratch.write_text(json.dumps(document, indent=2), encoding="utf-8")
        scratch.replace(spec)  # the relay never reads half a file
        self._signal(relay["pid"], relay["start"], signal.SIGHUP)
        return spec.with_suffix(".applied"), document["generation"]

    # ------------------------------------------------------------------ processes

    def spawn(
        self, name: str, argv: list[str], namespace: str | None, log: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in ``namespace`` (None: here), in a session of its own, recorded."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out, netns(namespace):
            process = subprocess.Popen(
                argv,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[process.pid] = process
        self._record("processes", _process_record(name, process.pid, namespace))
        return process

    def start_relay(
        self, name: str, spec: dict[str, Any], namespace: str | None, host: str | None
    ) -> None:
        """A relay (``blog.hosts.relay``) with ``spec``, in ``namespace``, ready on return;
        ``host``: the host whose link its RTT is (``set_links`` updates it)."""
        spec_path = self.state_dir / "relays" / f"{name}.json"
        spec_path.parent.mkdir(parents=True, exist_ok=True)
        spec_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        ready = spec_path.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "blog.hosts.relay", str(spec_path), "--ready-file"]
        process = self.spawn(name, [*argv, str(ready)], namespace, self.log_path(name))
        self._record(
            "relays",
            {"host": host, "spec": str(spec_path), "pid": process.pid, "start": _start(process)},
        )
        deadline = time.monotonic() + 15
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise HostsError(
                    f"{name} did not start:\n{self.log_path(name).read_text()[-2000:]}"
                )
            time.sleep(0.01)

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def _forwarder(self, plan: Plan) -> None:
        """The root namespace's door: backends in, the monolith out."""
        infra = plan.infra_namespace
        routes = [
            {
                "name": f"backend-{b.port}",
                "listen": {"netns": infra, "host": INFRA_ADDRESS, "port": b.port},
                "connect": {"netns": None, "host": "127.0.0.1", "port": b.port},
            }
            for b in plan.backends
        ]
        routes.append(
            {
                "name": "monolith",
                "listen": {"netns": None, "host": "127.0.0.1", "port": plan.expose_port},
                "connect": {
                    "netns": infra,
                    "host": plan.monolith.address,
                    "port": plan.monolith.port,
                },
            }
        )
        self.start_relay("forwarder", {"name": "forwarder", "routes": routes}, None, None)
        backends = ", ".join(str(b.port) for b in plan.backends) or "none"
        self.say(
            f"forwarder: 127.0.0.1:{plan.expose_port} -> monolith {plan.monolith.url}; "
            f"{INFRA_ADDRESS}:[{backends}] -> 127.0.0.1 (root namespace)"
        )

    def start_proxy(self, host: Host) -> None:
        """The delay proxy in front of a service host: its address and port, to the service on
        the host's loopback, delayed as the host's link says."""
        assert host.link is not None
        route = {
            "name": host.name,
            "listen": {"host": host.address, "port": host.port},
            "connect": {"host": "127.0.0.1", "port": host.port},
            "rtt_ms": host.link.rtt_ms,
            "jitter_ms": host.link.jitter_ms,
        }
        spec = {"name": f"{host.name}-proxy", "routes": [route]}
        self.start_relay(f"{host.name}-proxy", spec, host.namespace, host.name)

    def _service(self, host: Host, config_path: Path, server: ServerConfig) -> None:
        env = {"BLOG_INSTANCE_URL": host.url, "BLOG_INSTANCE_NAME": host.name}
        assert host.domain is not None
        if host.role == "worker":
            process = ServerProcess(
                [sys.executable, "-m", "extracted.email.worker"],
                port=host.port,
                name=host.name,
                config_path=config_path,
                output=self.log_path(host.name),
                env=env,
            )
        else:
            process = service_process(
                host.domain,
                name=host.name,
                port=host.port,
                config_path=config_path,
                server=server,
                workers=server.workers,
                output=self.log_path(host.name),
                env=env,
            )
        self._run_server(host.name, process, host.namespace)
        assert host.link is not None
        self.say(f"{host.name}: {host.url} in {host.namespace} ({describe_link(host.link)})")

    def start_monolith(
        self,
        host: Host,
        config_path: Path,
        *,
        server: ServerConfig,
        name: str = "monolith",
        port: int | None = None,
    ) -> None:
        """A monolith in the monolith's host, serving on its address (``port``: another one,
        for a second monolith beside the first, as the lab's keep-alive comparison runs)."""
        process = monolith_process(
            name=name,
            host=host.address,
            port=port or host.port,
            config_path=config_path,
            server=server,
            workers=server.workers,
            output=self.log_path(name),
            prepare=init_monolith_tables,
        )
        self._run_server(name, process, host.namespace)
        self.say(f"{name}: http://{host.address}:{port or host.port} in {host.namespace}")

    def _run_server(self, name: str, process: ServerProcess, namespace: str) -> None:
        with netns(namespace):  # prepared, spawned and health-checked from inside its host
            try:
                process.spawn()
            finally:
                if process.process is not None:
                    self._children[process.process.pid] = process.process
                    self._record("processes", _process_record(name, process.process.pid, namespace))
            process.wait_healthy(START_SECONDS)

    def _check_exposed(self, port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/api/health")
            status = connection.getresponse().status
        except (OSError, http.client.HTTPException) as exc:
            raise HostsError(f"the monolith is not reachable on 127.0.0.1:{port}: {exc}") from exc
        finally:
            connection.close()
        if status != 200:
            raise HostsError(f"GET http://127.0.0.1:{port}/api/health answered {status}")

    # ------------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Remove everything the state file lists, processes first; returns what was removed.
        Safe to run again, and on a lab that never finished starting."""
        require_root()
        removed: list[str] = []
        if not self.exists:
            return removed
        processes = list(reversed(self.state.get("processes", [])))
        for record in processes:
            self._signal(record["pid"], record["start"], signal.SIGTERM, group=True)
        deadline = time.monotonic() + STOP_SECONDS
        for record in processes:
            if self._wait_gone(record, deadline):
                removed.append(f"process {record['name']} (pid {record['pid']})")
                continue
            self._signal(record["pid"], record["start"], signal.SIGKILL, group=True)
            self._wait_gone(record, time.monotonic() + 5)
            removed.append(f"process {record['name']} (pid {record['pid']}, killed)")
        lab_namespaces = list(self.state.get("namespaces", []))
        for name in lab_namespaces:  # anything still living in our hosts is ours
            for pid in processes_in(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                removed.append(f"stray process {pid} in {name}")
        for table in self.state.get("nft_tables", []):
            if namespace_inode(table["namespace"]) is not None:
                with contextlib.suppress(HostsError):
                    run(["nft", "delete", "table", "inet", table["table"]], table["namespace"])
                    removed.append(f"nftables table inet {table['table']} in {table['namespace']}")
        for qdisc in self.state.get("qdiscs", []):
            if namespace_inode(qdisc["namespace"]) is not None:
                with contextlib.suppress(HostsError):
                    run(["tc", "qdisc", "del", "dev", qdisc["device"], "root"], qdisc["namespace"])
                    removed.append(f"tbf on {qdisc['device']} in {qdisc['namespace']}")
        infra = namespace_name(self.state["lab"], "infra")
        if namespace_inode(infra) is not None:
            for host in self.state.get("hosts", []):
                with contextlib.suppress(HostsError):  # deleting one end removes its peer
                    run(["ip", "link", "del", host["veth"]], namespace=infra)
                    removed.append(f"veth {host['veth']} <-> eth0 of {host['namespace']}")
            with contextlib.suppress(HostsError):
                run(["ip", "link", "del", "br0"], namespace=infra)
                removed.append(f"bridge br0 in {infra}")
        for name in reversed(lab_namespaces):
            if namespace_inode(name) is not None:
                run(["ip", "netns", "del", name])
                removed.append(f"namespace {name}")
        left = [n for n in lab_namespaces if namespace_inode(n) is not None]
        if left:
            raise HostsError(f"could not remove {', '.join(left)}")
        self.state_file.unlink(missing_ok=True)
        shutil.rmtree(self.state_dir / "relays", ignore_errors=True)
        self.state = {}
        return removed

    def _signal(self, pid: int, started: int | None, signum: int, group: bool = False) -> None:
        if started is None or start_time(pid) != started or _zombie(pid):
            return  # gone, or the pid now names another process
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)

    def _wait_gone(self, record: dict[str, Any], deadline: float) -> bool:
        child = self._children.get(record["pid"])
        while True:
            if child is not None:
                if child.poll() is not None:
                    return True
            elif start_time(record["pid"]) != record["start"] or _zombie(record["pid"]):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    # ------------------------------------------------------------------ status

    def status(self) -> list[str]:
        """One line per host and process: where it is and whether it runs."""
        if not self.exists:
            return [f"no lab recorded in {self.state_file}"]
        lines = [
            f"lab {self.state['lab']}: {self.state['subnet']}, "
            f"the monolith at {self.state['expose']}, config {self.state.get('config')}"
        ]
        for host in self.state["hosts"]:
            link = describe_link(NetworkConfig(**host["link"])) if host["link"] else "-"
            lines.append(
                f"  {host['name']:<12} {host['address']:<13} {host['namespace']:<24} {link}"
            )
        for record in self.state.get("processes", []):
            alive = start_time(record["pid"]) == record["start"] and not _zombie(record["pid"])
            state = "running" if alive else "gone"
            lines.append(f"  {record['name']:<24} pid {record['pid']:<8} {state}")
        return lines

    @contextlib.contextmanager
    def inside(self, host_name: str) -> Iterator[Host]:
        """This thread in ``host_name``'s namespace for the block (to measure from a host)."""
        record = self._host(host_name)
        with netns(record["namespace"]):
            yield _host_from(record)

    def host(self, name: str) -> Host:
        return _host_from(self._host(name))


def _wait_for_generation(applied: Path, generation: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if int(applied.read_text(encoding="utf-8") or 0) >= generation:
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise HostsError(f"the relay did not take its new links ({applied})")
        time.sleep(0.005)


def _server(config_path: Path, workers: int | None) -> ServerConfig:
    server = load_config(config_path).server
    if workers is not None:
        server = ServerConfig(name=server.name, workers=workers, threads=server.threads)
    if server.name == "waitress":
        server = ServerConfig(name="waitress", workers=1, threads=server.threads)
    return server


def _check_port_free(port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise HostsError(
                f"127.0.0.1:{port} is taken (make run or make serve?): stop it, or pick another "
                "port with --port"
            ) from exc


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _start(process: subprocess.Popen[bytes]) -> int | None:
    return start_time(process.pid)


def _process_record(name: str, pid: int, namespace: str | None) -> dict[str, Any]:
    return {"name": name, "pid": pid, "start": start_time(pid), "namespace": namespace}


def _link_record(link: NetworkConfig) -> dict[str, Any]:
    return {
        "rtt_ms": link.rtt_ms,
        "jitter_ms": link.jitter_ms,
        "bandwidth_mbit": link.bandwidth_mbit,
        "loss_percent": link.loss_percent,
    }


def _host_record(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "role": host.role,
        "domain": host.domain,
        "namespace": host.namespace,
        "address": host.address,
        "port": host.port,
        "veth": host.veth,
        "link": _link_record(host.link) if host.link is not None else None,
    }


def _host_from(record: Mapping[str, Any]) -> Host:
    link = NetworkConfig(**record["link"]) if record["link"] else None
    return Host(
        record["name"],
        record["role"],
        record["namespace"],
        record["address"],
        record["port"],
        record["domain"],
        link,
    )


def describe_link(link: NetworkConfig) -> str:
    parts = [f"rtt {link.rtt_ms:g} ms"]
    if link.jitter_ms:
        parts.append(f"jitter {link.jitter_ms:g} ms")
    if link.bandwidth_mbit:
        parts.append(f"{link.bandwidth_mbit:g} Mbit/s")
    if link.loss_percent:
        parts.append(f"loss {link.loss_percent:g} %")
    return ", ".join(parts)
