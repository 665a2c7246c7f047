"""Which domains run extracted: the lab's topologies.

A topology is the set of domains that run extracted (``services.<d>.mode: http``). It comes from
the config file (``BLOG_CONFIG`` or ``config.yaml``) unless ``BLOG_BENCH_TOPOLOGY`` names one:
``monolith``, ``auth-http``, ``posts-http``, ``images-http``, ``payments-http``, ``all-http``, or a
combination such as ``auth+images-http``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from blog.config import load_config
from blog.domains import HTTP_SERVICES

TOPOLOGY_ENV = "BLOG_BENCH_TOPOLOGY"

MATRIX: tuple[str, ...] = (
    "monolith",
    *(f"{domain}-http" for domain in HTTP_SERVICES),
    "all-http",
)
"""The topologies ``make bench-matrix`` compares: the monolith, each domain alone, all four."""


@dataclass(frozen=True)
class Topology:
    name: str
    extracted: tuple[str, ...]

    @property
    def is_monolith(self) -> bool:
        return not self.extracted


def topology_name(extracted: Iterable[str]) -> str:
    chosen = [d for d in HTTP_SERVICES if d in set(extracted)]
    if not chosen:
        return "monolith"
    if len(chosen) == len(HTTP_SERVICES):
        return "all-http"
    return "+".join(chosen) + "-http"


def parse_topology(name: str) -> Topology:
    name = name.strip()
    if name == "monolith":
        return Topology(name, ())
    if name == "all-http":
        return Topology(name, HTTP_SERVICES)
    if name.endswith("-http"):
        domains = tuple(name[: -len("-http")].split("+"))
        unknown = [d for d in domains if d not in HTTP_SERVICES]
        if not unknown and len(set(domains)) == len(domains):
            return Topology(topology_name(domains), tuple(d for d in HTTP_SERVICES if d in domains))
    raise ValueError(
        f"{TOPOLOGY_ENV}={name!r} is not a topology; use one of {', '.join(MATRIX)} "
        f"(or a combination such as auth+images-http)"
    )


def current_topology(environ: Mapping[str, str] | None = None) -> Topology:
    """``BLOG_BENCH_TOPOLOGY`` if set, else what the config file's ``services.<d>.mode`` say."""
    environ = os.environ if environ is None else environ
    if environ.get(TOPOLOGY_ENV, "").strip():
        return parse_topology(environ[TOPOLOGY_ENV])
    config = load_config(environ=environ)
    extracted = [d for d in HTTP_SERVICES if config.mode(d) == "http"]
    return Topology(topology_name(extracted), tuple(extracted))
