"""Service discovery: where a domain's instances are, kept current, never looked up per call.

Three sources, chosen by ``discovery.kind`` (the tutorial's stage 6):

- ``static``: the URLs in config.yaml (``services.<domain>.url``, or ``urls`` for several);
- ``registry``: etcd. Each extracted instance registers itself under its domain on a lease it
  keeps alive (:class:`~blog.discovery.registry.Registrar`); the monolith watches the keys
  (:class:`~blog.discovery.registry.RegistryDirectory`);
- ``dns``: one name resolved to several addresses, again on a short interval, as Compose and
  Kubernetes provide (:class:`~blog.discovery.dns.DnsInstances`).

Each gives the transport an :class:`InstanceSource`; the balancer in
``blog.transport.balancing`` spreads calls across what it lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class InstanceSource(Protocol):
    def instances(self) -> tuple[str, ...]:
        """The base URLs of the domain's instances, as last known (cheap: no I/O)."""

    def describe(self) -> dict[str, Any]:
        """What ``/api/health`` shows of the source itself (which kind, and whether it is up)."""


class StaticInstances:
    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = tuple(url.rstrip("/") for url in urls)

    def instances(self) -> tuple[str, ...]:
        return self._urls

    def describe(self) -> dict[str, Any]:
        return {"discovery": "static"}
