"""Helpers for the tests that build hosts (network namespaces): root only.

Each test lab has a name of its own (``t`` and random hex), so a test never touches another
run's namespaces, and removes what it made even when it fails.
"""

from __future__ import annotations

import importlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from blog.config import NetworkConfig
from blog.domains import HTTP_SERVICES
from blog.hosts.netns import netns
from blog.hosts.plan import MONOLITH_ADDRESS, Host, Plan, _address, namespace_name
from tests.support import ThreadedServer, service_overrides

TOOLS = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "nsenter": "util-linux"}


def require_hosts(tools: tuple[str, ...] = tuple(TOOLS)) -> None:
    """Skip (or, under BLOG_REQUIRE_SERVICES=1, fail) without root or the network ``tools``."""
    missing = [f"{tool} ({TOOLS[tool]})" for tool in tools if not shutil.which(tool)]
    message = None
    if os.geteuid() != 0:
        message = "the hosts lab needs root (network namespaces, veths, tc, nftables)"
    elif missing:
        message = f"the hosts lab needs {', '.join(missing)}: apt-get install them"
    if message is None:
        return
    if os.environ.get("BLOG_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def lab_name() -> str:
    return f"t{uuid.uuid4().hex[:7]}"


def api_plan(lab: str, rtt_ms: float) -> Plan:
    """The API suite's hosts: the monolith and one host per HTTP domain, ``rtt_ms`` apart; no
    process (the suite runs its services in threads whose sockets live in these hosts)."""
    from blog.domains import manifest

    hosts = [Host("monolith", "monolith", namespace_name(lab, "monolith"), MONOLITH_ADDRESS, 0)]
    for number, domain in enumerate(HTTP_SERVICES, start=10):
        hosts.append(
            Host(
                domain,
                "service",
                namespace_name(lab, domain),
                _address(number),
                manifest(domain).extraction.port,
                domain,
                NetworkConfig(rtt_ms=rtt_ms),
            )
        )
    return Plan(lab, hosts, [], 0, {})


class NamespacedService(ThreadedServer):
    """An extracted service's app on a real socket in a thread of this process, its listening
    socket made inside its host (the host's loopback, behind the host's delay proxy)."""

    def __init__(self, domain: str, host: Host, state: Path, **extra: Any) -> None:
        state.mkdir(parents=True, exist_ok=True)
        module = importlib.import_module(f"extracted.{domain}")
        app = module.create_app(service_overrides(domain, state, **extra))
        # the monolith calls the host's URL: the delay proxy in front of the socket
        super().__init__(app, host.port, url=host.url, binding=netns(host.namespace))
