"""How every part of the matrix takes and summarises its samples: interleaved blocks, and
percentiles in microseconds."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from time import perf_counter_ns
from typing import Any

from blog.timing import calls_var
from lab.stats import percentile


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def stats_us(samples_ns: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/min (µs) and the count of nanosecond samples."""
    us = [s / 1000 for s in samples_ns]
    return {
        "p50": percentile(us, 50),
        "p95": percentile(us, 95),
        "p99": percentile(us, 99),
        "min": min(us),
        "n": len(us),
    }


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    rounds: int,
    block: int,
) -> dict[str, list[float]]:
    """Per-call nanoseconds of each variant, in blocks taken in a shuffled order every round, so
    drift on a shared machine spreads over all variants alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    shuffle = random.Random(7)
    calls = calls_var.get()
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            fn, out = variants[name], samples[name]
            for _ in range(block):
                started = perf_counter_ns()
                fn()
                out.append(perf_counter_ns() - started)
        if calls is not None:
            calls.clear()  # TimedDomain's per-request record; a request would start a new one
    return samples


def warm(variants: Mapping[str, Callable[[], Any]], calls: int = 10) -> None:
    """First calls pay for connections, caches and lazy imports: make them before sampling."""
    for fn in variants.values():
        for _ in range(calls):
            fn()
