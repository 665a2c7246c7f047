"""Instances from DNS: one name, several addresses, resolved again on a short interval.

What Docker Compose (a scaled service) and Kubernetes (a headless Service) give a caller. The
port comes from the configured URL; each address the name resolves to is one instance. Between
resolutions the last answer stands, and a failed resolution keeps it (with a warning).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.resolver

log = logging.getLogger(__name__)


class DnsInstances:
    def __init__(self, url: str, nameserver: str | None, interval: float) -> None:
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"{url!r}: no host name to resolve")
        self._name = parts.hostname
        self._port = parts.port or 80
        self._interval = interval
        self._resolver: dns.resolver.Resolver | None = None
        if nameserver is not None:
            host, _, port = nameserver.rpartition(":")
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host or nameserver]
            self._resolver.port = int(port) if host and port.isdigit() else 53
            self._resolver.lifetime = 2.0
        self._urls: tuple[str, ...] = ()
        self.error: str | None = "not resolved yet"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def instances(self) -> tuple[str, ...]:
        return self._urls

    def resolve(self) -> tuple[str, ...]:
        """Resolve now; keep the last answer when it fails."""
        try:
            addresses = self._addresses()
        except (OSError, dns.exception.DNSException) as exc:
            if self.error is None:
                log.warning(
                    "dns: %s does not resolve (%s): keeping %s", self._name, exc, self._urls
                )
            self.error = str(exc) or type(exc).__name__
            return self._urls
        urls = tuple(
            sorted(
                f"http://[{a}]:{self._port}" if ":" in a else f"http://{a}:{self._port}"
                for a in set(addresses)
            )
        )
        if urls != self._urls:
            log.info("dns: %s → %s", self._name, ", ".join(urls) or "nothing")
        self._urls, self.error = urls, None
        return urls

    def _addresses(self) -> list[str]:
        if self._resolver is not None:
            answer = self._resolver.resolve(self._name, "A")
            return [record.to_text() for record in answer]
        infos = socket.getaddrinfo(self._name, self._port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    def start(self) -> None:
        self.resolve()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"dns-{self._name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self.resolve()

    def stop(self) -> None:
        self._stopping.set()

    def describe(self) -> dict[str, Any]:
        state = "up" if self.error is None else f"down: {self.error}"
        return {"discovery": "dns", "name": self._name, "resolver": state}
