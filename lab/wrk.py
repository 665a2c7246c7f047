"""wrk, the load generator for throughput: run it pinned and bounded, and read its summary.

The latency parts drive one request at a time from Python; throughput needs a load generator
that saturates the servers without itself competing for their CPU: wrk (C, one thread per
core, keep-alive connections) on the load CPU, pinned with ``taskset``, for a fixed time.
Only ever aimed at 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

INSTALL_HINT = "wrk is not installed: install it with `apt-get install wrk` (Debian, Ubuntu)"
LOOPBACK = "http://127.0.0.1:"


class WrkMissing(RuntimeError):
    """wrk is not on PATH (and could not be installed)."""


class WrkFailed(RuntimeError):
    """wrk exited with an error, or its output had no summary."""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def ensure_wrk() -> str:
    """The path of wrk; when it is missing and this process is root, install it with apt-get
    (``apt-get update`` first only if the install fails: the package lists may be stale)."""
    found = wrk_path()
    if found:
        return found
    if os.geteuid() != 0:
        raise WrkMissing(INSTALL_HINT)
    print(f"{INSTALL_HINT}; installing it (root)", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    found = wrk_path()
    if not found:
        raise WrkMissing(INSTALL_HINT)
    return found


@dataclass(frozen=True)
class WrkResult:
    """wrk's summary of one run."""

    requests: int
    seconds: float
    latency_p50_us: float
    latency_p99_us: float
    errors: int
    """Socket errors plus answers other than 2xx/3xx: a run with any is not a throughput."""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}


def _duration_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise WrkFailed(f"unreadable duration {text!r}")
    return float(match.group(1)) * _UNITS_US[match.group(2)]


def parse(output: str) -> WrkResult:
    """Read wrk's summary (run with ``--latency``)."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", output)
    if not total:
        raise WrkFailed(f"no summary in wrk's output:\n{output}")
    seconds = float(total.group(2)) * _UNITS_US[total.group(3)] / 1e6
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    socket_errors = re.search(r"Socket errors:(.*)$", output, re.MULTILINE)
    errors = sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1))) if socket_errors else 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(
        requests=int(total.group(1)),
        seconds=seconds,
        latency_p50_us=_duration_us(percentiles["50"]) if "50" in percentiles else 0.0,
        latency_p99_us=_duration_us(percentiles["99"]) if "99" in percentiles else 0.0,
        errors=errors,
    )


def run(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    cpus: str | None = None,
) -> WrkResult:
    """wrk against ``url`` (loopback only) for ``seconds``, pinned to ``cpus``; keep-alive
    connections, a 10 s per-request timeout, and a hard stop well after the run should end."""
    if not url.startswith(LOOPBACK):
        raise ValueError(f"the lab only loads 127.0.0.1, not {url}")
    binary = wrk_path()
    if binary is None:
        raise WrkMissing(INSTALL_HINT)
    command = [
        binary,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(round(seconds), 1)}s",
        "--timeout=10s",
        "--latency",
        url,
    ]
    if cpus:
        command = ["taskset", "-c", cpus, *command]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkFailed(f"wrk did not finish: {' '.join(command)}") from exc
    if result.returncode != 0:
        raise WrkFailed(f"wrk exited with {result.returncode}:\n{result.stdout}{result.stderr}")
    return parse(result.stdout)
