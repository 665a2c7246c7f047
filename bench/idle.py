"""Idle cost: the CPU a topology burns with no request at all (background work: event-feed
long-polls, relays, timers)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from lab import procstat


def idle_ms_per_s(topologies: Mapping[str, list[int]], seconds: float) -> dict[str, float]:
    """CPU milliseconds per second of each topology's processes (all of them together), read
    over the same ``seconds`` for every topology so they share the machine's moment."""
    before = {name: procstat.cpu_ns(pids) for name, pids in topologies.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    return {
        name: (procstat.cpu_ns(pids) - before[name]) / 1e6 / wall
        for name, pids in topologies.items()
    }
