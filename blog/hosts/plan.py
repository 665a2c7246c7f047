"""What ``hosts up`` will build, decided before anything is touched: the hosts, their
addresses, the links and their settings, the root-namespace backends the hosts reach through the
infra host, and the config file every host's process reads.

Pure: no namespace, socket or process here, so the plan is unit-tested without root.

The layout, for a lab named ``hosts`` (``sb-<lab>-<host>`` for each namespace)::

    root namespace          127.0.0.1:5000 ─┐            (the forwarder, a process in the root
    (no lab address)        127.0.0.1:5432 ◄┼─┐           namespace with sockets in both)
                                            │ │
    sb-hosts-infra          br0 198.18.0.1 ─┘ └─ :5432 :5672 :2379 ... (backends, forwarded)
                             ├── v-monolith ── sb-hosts-monolith  198.18.0.2   the monolith :5000
                             ├── v-auth ────── sb-hosts-auth      198.18.0.10  delay proxy :3001
                             │                                    → 127.0.0.1:3001 the service
                             ├── v-images-1 ── sb-hosts-images-1  198.18.0.12  ...
                             └── ...

Every service host's only way in is its delay proxy, so every call to it crosses the link and
pays its RTT; the service itself listens on its host's loopback.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from blog.config import NETWORK_LINK_KEYS, Config, ConfigError, NetworkConfig
from blog.domains import HTTP_SERVICES
from blog.hosts.netns import LAB_NETWORK

SUBNET = ipaddress.ip_network("198.18.0.0/24")
"""Every lab's hosts: labs never share a bridge, so two labs may use the same addresses."""
INFRA_ADDRESS = str(SUBNET.network_address + 1)
MONOLITH_ADDRESS = str(SUBNET.network_address + 2)
FIRST_HOST = 10
MONOLITH_PORT = 5000
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost"})
DEFAULT_PORTS = {
    "postgresql": 5432,
    "postgres": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "amqp": 5672,
    "redis": 6379,
    "http": 80,
    "https": 443,
}
MAX_LAB_NAME = 12
"""``sb-<lab>-<host>`` stays readable, and the infra side's interface names (``v-<host>``, at
most 15 characters) do not depend on it."""

Role = Literal["monolith", "service", "worker"]


@dataclass(frozen=True)
class Host:
    """One host: a namespace with one address on the lab's bridge."""

    name: str
    role: Role
    namespace: str
    address: str
    port: int
    """Where its process serves (the service's port on its loopback, behind the proxy on the
    same port at ``address``; the monolith's on ``address``)."""
    domain: str | None = None
    link: NetworkConfig | None = None
    """A service or worker host's link to the bridge (None: the monolith's, which is free)."""

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def veth(self) -> str:
        """The infra side of its veth pair (the host side is ``eth0`` in its namespace)."""
        return f"v-{self.name}"[:15]


@dataclass(frozen=True)
class Backend:
    """A server in the root namespace the hosts reach at ``INFRA_ADDRESS:port``."""

    port: int
    used_by: tuple[str, ...]
    """The config keys that name it."""


@dataclass(frozen=True)
class Plan:
    lab: str
    hosts: list[Host]
    backends: list[Backend]
    expose_port: int
    """The monolith, as the root namespace sees it: ``127.0.0.1:<expose_port>``."""
    config: dict[str, Any]
    """The config file of every host's process."""
    notes: list[str] = field(default_factory=list)

    @property
    def infra_namespace(self) -> str:
        return namespace_name(self.lab, "infra")

    @property
    def monolith(self) -> Host:
        (host,) = [h for h in self.hosts if h.role == "monolith"]
        return host

    def services(self) -> list[Host]:
        return [h for h in self.hosts if h.role != "monolith"]


def namespace_name(lab: str, host: str) -> str:
    return f"sb-{lab}-{host}"


def check_lab_name(lab: str) -> str:
    if not (lab and len(lab) <= MAX_LAB_NAME and lab.replace("-", "").isalnum() and lab.isascii()):
        raise ConfigError(
            f"lab name {lab!r}: 1 to {MAX_LAB_NAME} letters, digits or dashes (it prefixes "
            "every namespace the lab makes)"
        )
    return lab


def effective_link(
    network: NetworkConfig, domain: str, overrides: Mapping[str, float | None]
) -> NetworkConfig:
    """``domain``'s link: the config's common settings, its own, then the command line's
    (which apply to every link)."""
    link = network.link(domain)
    given = {k: v for k, v in overrides.items() if k in NETWORK_LINK_KEYS}
    return dataclasses.replace(link, **given)  # type: ignore[arg-type]


def plan_hosts(
    config: Config,
    *,
    lab: str = "hosts",
    scale: Mapping[str, int] | None = None,
    link_overrides: Mapping[str, float | None] | None = None,
    expose_port: int = MONOLITH_PORT,
) -> Plan:
    """The hosts for ``config``: the monolith, every instance of every ``mode: http`` service
    (``scale``: instances per domain), and the email worker when email is extracted."""
    check_lab_name(lab)
    scale = scale or {}
    overrides = link_overrides or {}
    hosts = [Host("monolith", "monolith", namespace_name(lab, "monolith"), MONOLITH_ADDRESS, 5000)]
    number = FIRST_HOST
    for domain in HTTP_SERVICES:
        if config.mode(domain) != "http":
            continue
        port = config.services[domain].port
        if port is None:
            raise ConfigError(f"services.{domain}.port: needed to run the service on a host")
        count = scale.get(domain, 1)
        for i in range(count):
            name = domain if count == 1 else f"{domain}-{i + 1}"
            hosts.append(
                Host(
                    name,
                    "service",
                    namespace_name(lab, name),
                    _address(number),
                    port,
                    domain,
                    effective_link(config.network, domain, overrides),
                )
            )
            number += 1
    unknown = set(scale) - {h.domain for h in hosts}
    if unknown:
        raise ConfigError(
            f"--scale {', '.join(sorted(unknown))}: not a service in http mode in {config.source}"
        )
    if config.mode("email") == "extracted":
        port = config.services["email"].port
        if port is None:
            raise ConfigError("services.email.port: needed to serve the worker's inbox")
        hosts.append(
            Host(
                "email",
                "worker",
                namespace_name(lab, "email"),
                _address(number),
                port,
                "email",
                effective_link(config.network, "email", overrides),
            )
        )
    notes: list[str] = []
    hosts_config, backends = hosts_config_for(config, hosts, lab, notes)
    return Plan(lab, hosts, backends, expose_port, hosts_config, notes)


def _address(number: int) -> str:
    address = SUBNET.network_address + number
    if address not in SUBNET or address == SUBNET.broadcast_address:
        raise ConfigError(f"more hosts than the lab's {SUBNET} holds")
    return str(address)


# --------------------------------------------------------------------------- the hosts' config


def plain(section: Any) -> Any:
    """A loaded config (or section) back in the file's shape: every setting explicit, secrets
    (which come from the environment) and internal fields left out."""
    if dataclasses.is_dataclass(section) and not isinstance(section, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(section):
            if "env" in f.metadata or f.metadata.get("internal"):
                continue
            out[f.name] = plain(getattr(section, f.name))
        return out
    if isinstance(section, Mapping):
        return {key: plain(value) for key, value in section.items()}
    if isinstance(section, list | tuple):
        return [plain(value) for value in section]
    return section


def hosts_config_for(
    config: Config, hosts: list[Host], lab: str, notes: list[str]
) -> tuple[dict[str, Any], list[Backend]]:
    """The config every host runs with: ``config`` in full, each extracted service at its
    hosts' addresses, and every server of the root namespace it names (databases, the broker,
    the registry, Redis, SMTP...) at the infra host's address, where the forwarder listens."""
    raw: dict[str, Any] = plain(config)
    services = raw["services"]
    for domain in (*HTTP_SERVICES, "email"):
        instances = [h for h in hosts if h.domain == domain]
        if instances:
            services[domain]["url"] = instances[0].url
            services[domain]["urls"] = [h.url for h in instances] if len(instances) > 1 else []
    discovery = raw["discovery"]
    if discovery["kind"] == "dns":
        discovery["kind"] = "static"
        notes.append(
            "discovery.kind dns: the hosts have no DNS server; they run with static addresses"
        )
    if discovery["kind"] == "registry":
        # the lab's instances register under a prefix of their own: another copy of the blog
        # on the same etcd (the user's make services, a test) never sees them, nor they it
        discovery["registry"]["prefix"] = f"{discovery['registry']['prefix']}{lab}/"
    ports: dict[int, list[str]] = {}
    _rewrite(raw, "", ports, notes, skip={"services"})
    for domain, section in services.items():
        _rewrite(section, f"services.{domain}.", ports, notes, skip={"url", "urls"})
    smtp = raw["email"]["smtp"]
    if raw["email"]["transport"] == "smtp" and smtp["host"] in LOOPBACK_NAMES:
        smtp["host"] = INFRA_ADDRESS
        ports.setdefault(int(smtp["port"]), []).append("email.smtp.host")
    backends = [Backend(port, tuple(keys)) for port, keys in sorted(ports.items())]
    return raw, backends


def _rewrite(
    section: dict[str, Any],
    prefix: str,
    ports: dict[int, list[str]],
    notes: list[str],
    skip: set[str],
) -> None:
    for key, value in section.items():
        if key in skip:
            continue
        where = prefix + key
        if isinstance(value, dict):
            _rewrite(value, where + ".", ports, notes, set())
        elif isinstance(value, str) and "://" in value:
            section[key] = _via_infra(value, where, ports, notes)


def _via_infra(url: str, where: str, ports: dict[int, list[str]], notes: list[str]) -> str:
    """``url`` with a loopback host moved to the infra host (and its port forwarded there)."""
    parts = urlsplit(url)
    try:
        host = parts.hostname
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.partition("+")[0])
    except ValueError:
        return url
    if host is None:
        return url  # sqlite:////path, memory://
    if host not in LOOPBACK_NAMES:
        try:
            outside = ipaddress.ip_address(host) not in LAB_NETWORK
        except ValueError:
            outside = True
        if outside:
            notes.append(
                f"{where}: {host} is not on this machine; the hosts cannot reach it (they have "
                "no route off the lab)"
            )
        return url
    if port is None:
        notes.append(f"{where}: {url} has no port the lab knows; it is not forwarded")
        return url
    ports.setdefault(port, []).append(where)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo + '@' if userinfo else ''}{INFRA_ADDRESS}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))
