"""How the soak judges growth (``lab/soak.py``): a leak fails, a pool that fills and stops, a
sawtooth and noise pass."""

from __future__ import annotations

import random

from lab.soak import judge, tolerance_of

TIMES = [5.0 * n for n in range(121)]  # ten minutes, a sample every 5 s


def _verdict(series: str, values: list[float]) -> bool:
    points = list(zip(TIMES, values, strict=True))
    return judge(series, points, tolerance_of(series, values)).passed


def test_a_steady_leak_fails() -> None:
    leak = [80_000 + 30 * t for t in TIMES]  # +1.8 MiB a minute, 18 MiB over the run
    assert not _verdict("memory_kb monolith", leak)
    fds = [40 + t // 60 for t in TIMES]  # one descriptor a minute, never closed
    assert not _verdict("fds posts", fds)


def test_a_pool_that_fills_and_stops_passes() -> None:
    sockets = [min(12 + t // 10, 33) for t in TIMES]  # fills in the first minutes, then stays
    assert _verdict("sockets monolith", sockets)
    warming = [74_000 + 4_000 * min(t / 240, 1.0) for t in TIMES]  # caches warm in 4 minutes
    assert _verdict("memory_kb auth", warming)


def test_a_sawtooth_and_noise_pass() -> None:
    chooser = random.Random(7)
    outbox = [100 + (t % 12) * 3 + chooser.randint(-15, 15) for t in TIMES]  # filled, purged
    assert _verdict("outbox rows posts", outbox)
    memory = [76_000 + chooser.randint(-1_500, 1_500) for _ in TIMES]
    assert _verdict("memory_kb images", memory)
    assert _verdict("queue email_service_queue", [0.0 for _ in TIMES])
