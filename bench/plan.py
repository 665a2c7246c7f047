"""How much of everything the matrix measures: the full run's sizes, and ``--quick``'s."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Plan:
    """Sized so the full matrix stays within about ten minutes on 2 CPUs."""

    probe_blocks: int = 300  # × 1000 calls: direct vs TimedDomain no-op
    call_samples: int = 2000  # in-process get_user, direct vs TimedDomain
    hop_rounds: int = 80  # × hop_block calls of each variant of each hop, interleaved
    hop_block: int = 6
    ladder_rounds: int = 100  # × hop_block calls of each rung of the ladder, interleaved
    bcrypt_hashes: int = 3
    suite_max_time: float = 0.8  # pytest-benchmark --benchmark-max-time per scenario
    cost_requests: int = 150  # per scenario (uploads: cost_uploads)
    cost_uploads: int = 20
    cost_warmup: int = 15
    idle_seconds: float = 1.5  # the cost part's idle reading, per topology
    page_rounds: int = 60  # × page_block post pages per topology, interleaved
    page_block: int = 5
    settle_seconds: float = 2.0  # after seeding, before the idle reading: events delivered
    idle_cost_seconds: float = 10.0  # the idle-cost target's reading, everything extracted
    wrk_seconds: float = 5.0  # one throughput run
    wrk_warmup_seconds: float = 1.0
    wrk_connections: int = 8
    quiet_requests: int = 300
    burst_threads: int = 4
    burst_uploads: int = 6  # per thread
    burst_probe_cap: int = 20000
    renames: int = 30  # the duplication part's renames, one after another
    rename_catch_up_seconds: float = 10.0  # how long the list may take to show each new name
    fallback_pages: int = 200  # post pages with auth up, then as many with auth stopped

    @classmethod
    def quick(cls) -> Plan:
        """A smoke of every part: seconds each, numbers not worth reading."""
        return cls(
            probe_blocks=30,
            call_samples=200,
            hop_rounds=2,
            hop_block=10,
            ladder_rounds=3,
            bcrypt_hashes=1,
            suite_max_time=0.05,
            cost_requests=10,
            cost_uploads=2,
            cost_warmup=2,
            idle_seconds=0.2,
            page_rounds=3,
            page_block=5,
            settle_seconds=0.5,
            idle_cost_seconds=1.0,
            wrk_seconds=1.0,
            wrk_warmup_seconds=1.0,
            quiet_requests=30,
            burst_threads=2,
            burst_uploads=2,
            renames=3,
            rename_catch_up_seconds=5.0,
            fallback_pages=20,
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
