"""CPU sets in ``taskset`` syntax (``1``, ``0,2``, ``2-3``), and pinning this process to one.

The matrix puts the load generator on one CPU and every server on another, so that neither
steals the other's time and each process's CPU use can be read apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

SERVER_CPUS_ENV = "BLOG_BENCH_SERVER_CPUS"
"""CPUs (``taskset`` list syntax) to pin the latency suite's extracted services to."""


def parse_cpus(spec: str | None) -> set[int] | None:
    """``"1"``, ``"0,2"``, ``"2-3"`` → a CPU set; empty → None (no pinning)."""
    if not spec or not spec.strip():
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def cpu_list(cpus: set[int] | None) -> str | None:
    """A CPU set back in ``taskset -c`` syntax; None → None (no pinning)."""
    return ",".join(str(cpu) for cpu in sorted(cpus)) if cpus else None


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Run the block on ``cpus`` (this thread only; a process it forks inherits the affinity)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
