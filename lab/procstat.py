"""What a process tree costs, read from the kernel's own accounting under /proc (Linux only).

CPU time comes two ways, and the report shows both:

- ``/proc/<pid>/task/<tid>/schedstat``: nanoseconds on CPU per thread, summed over the process's
  live threads. Precise enough for one scenario's few hundred requests; a thread that exits
  takes its time with it (gunicorn's gthread pool and the monolith's pools keep their threads).
- ``/proc/<pid>/stat`` utime + stime: every thread, dead or alive, but in clock ticks (10 ms):
  the cross-check over a whole topology's run.

Memory is ``/proc/<pid>/smaps_rollup``: RSS, and PSS, which splits the pages a gunicorn master
shares with its forked workers between them, so PSS adds up across processes and RSS does not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:  # gone meanwhile, not ours to read, or no /proc (not Linux)
        return ""


def _stat_fields(pid: int) -> list[str]:
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return []
    # the command name (field 2) may hold spaces; everything after its ')' is space-separated
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (a gunicorn master and its workers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                parents[int(entry)] = int(fields[1])  # ppid
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree.extend(children)
        frontier = children
    return tree


def cpu_ns(pids: Iterable[int]) -> int:
    """Nanoseconds on CPU of every live thread of ``pids``."""
    total = 0
    for pid in pids:
        task_dir = f"/proc/{pid}/task"
        try:
            tids = os.listdir(task_dir)
        except FileNotFoundError:
            continue
        for tid in tids:
            raw = _read(f"{task_dir}/{tid}/schedstat")
            if raw:
                total += int(raw.split()[0])
    return total


def cpu_ticks_seconds(pids: Iterable[int]) -> float:
    """utime + stime of ``pids`` (all their threads, including exited ones), in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class Memory:
    rss_kb: int
    pss_kb: int
    processes: int


def memory(pids: Iterable[int]) -> Memory:
    rss = pss = count = 0
    for pid in pids:
        raw = _read(f"/proc/{pid}/smaps_rollup")
        if not raw:
            continue
        count += 1
        for line in raw.splitlines():
            key, _, value = line.partition(":")
            if key == "Rss":
                rss += int(value.split()[0])
            elif key == "Pss":
                pss += int(value.split()[0])
    return Memory(rss, pss, count)


def cpus_allowed(pid: int) -> str:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``)."""
    fields = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every child it has reaped (and theirs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``): a gunicorn worker killed
    with its master is reparented here instead of to init, so that reaping it counts its CPU in
    this process's children time. Returns whether it worked."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans() -> None:
    """Reap every adopted child that has exited (never blocks)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Neighbours:
    """How much CPU other work on the machine used during a block, in CPUs (0.5: half a CPU on
    average). Everything this process started must be reaped by the end of the block."""

    def __enter__(self) -> Neighbours:
        self._busy, self._own = machine_busy_seconds(), own_cpu_seconds()
        self._wall = time.monotonic()
        self.cpus = 0.0
        return self

    def __exit__(self, *_exc: object) -> None:
        time.sleep(0.05)  # let the last killed processes become reapable
        reap_orphans()
        wall = time.monotonic() - self._wall
        others = (machine_busy_seconds() - self._busy) - (own_cpu_seconds() - self._own)
        self.cpus = max(others, 0.0) / wall if wall > 0 else 0.0
