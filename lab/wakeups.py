"""Quick wake-ups while the lab measures distance: hold the kernel's CPU latency request at 0.

A process that waits milliseconds for an answer lets its CPU go idle, and on this machine (a VM
whose idle CPUs halt) waking it again takes tens of microseconds more than waking a busy one.
Across a real network the same happens, but it is not what the lab measures: with
``/dev/cpu_dma_latency`` held at 0 the idle CPUs poll instead of halting, so a 5 ms wait costs
5 ms and a few microseconds, and the numbers show the network, not the hypervisor. The kernel
drops the request as soon as the file is closed (by this context, or by the process ending).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator

PM_QOS_DEVICE = "/dev/cpu_dma_latency"


@contextlib.contextmanager
def quick_wakeups() -> Iterator[bool]:
    """Yields whether the request is in force (it needs root and the device)."""
    try:
        fd = os.open(PM_QOS_DEVICE, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        os.write(fd, struct.pack("i", 0))
        yield True
    finally:
        os.close(fd)
