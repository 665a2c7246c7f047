"""Network namespaces from Python: enter one on this thread, run ``ip``/``tc``/``nft`` in one,
and find the processes that live in one.

Python 3.11 has no ``os.setns``, so :func:`netns` calls ``setns(2)`` through ctypes. A network
namespace is a property of each thread (a kernel task), so entering one moves the calling thread
only: a socket it creates there stays there for life (a listening socket keeps accepting in that
namespace after the thread has switched back), and a process or thread it starts while inside is
born inside. That is all the lab needs: a forwarder that listens in one namespace and connects in
another, and servers started straight into their host without a wrapper command.

Nothing here ever connects anywhere. The rule every caller follows: a lab address
(198.18.0.0/15) is only ever dialled from a thread inside a lab namespace, because from the
root namespace the default route would carry it off the machine (:func:`require_lab_namespace`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` mounts a named namespace (what ``setns`` opens)."""
CLONE_NEWNET = 0x40000000
LAB_NETWORK = ipaddress.ip_network("198.18.0.0/15")
"""RFC 2544's benchmarking range: the only addresses a lab host gets."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class HostsError(RuntimeError):
    """The lab cannot do what was asked; the message says why and what to do."""


def require_root() -> None:
    """Namespaces, veths, qdiscs and nftables need CAP_NET_ADMIN: say so plainly, not with a
    kernel error from the middle of a half-built lab."""
    if os.geteuid() != 0:
        raise HostsError(
            "the hosts lab needs root (network namespaces, veth pairs, a bridge, tc, nftables): "
            "run it with sudo, e.g. sudo .venv/bin/flask --app blog hosts up"
        )


def namespace_path(name: str) -> Path:
    return NETNS_DIR / name


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def current_namespace() -> int:
    """The inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def namespace_inode(name: str) -> int | None:
    try:
        return namespace_path(name).stat().st_ino
    except OSError:
        return None


@contextlib.contextmanager
def netns(name: str | None) -> Iterator[None]:
    """Run the block with this thread in the named namespace (None: stay where it is), then
    switch back to the namespace the thread was in, even when the block raises."""
    if name is None:
        yield
        return
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        there = os.open(namespace_path(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(there)
        finally:
            os.close(there)
        try:
            yield
        finally:
            _setns(here)
    finally:
        os.close(here)


def enter(name: str) -> int:
    """Move this thread into ``name`` for good and return a descriptor of where it was (for
    :func:`leave`): for a thread whose whole life belongs to one host, such as a test's."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    there = os.open(namespace_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(there)
    except OSError:
        os.close(here)
        raise
    finally:
        os.close(there)
    return here


def leave(previous: int) -> None:
    """Back to the namespace :func:`enter` came from."""
    try:
        _setns(previous)
    finally:
        os.close(previous)


def require_lab_namespace(address: str) -> None:
    """Refuse to dial a lab address from a namespace that is not a lab's: from the root
    namespace it would leave the machine by the default route."""
    if ipaddress.ip_address(address) in LAB_NETWORK and not _in_named_namespace():
        raise HostsError(f"refusing to reach {address} from outside the lab's namespaces")


def _in_named_namespace() -> bool:
    inode = current_namespace()
    try:
        entries = list(NETNS_DIR.iterdir())
    except OSError:
        return False
    return any(_inode(entry) == inode for entry in entries)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def run(argv: Sequence[str], namespace: str | None = None, *, stdin: str | None = None) -> str:
    """Run ``ip``/``tc``/``nft`` (in ``namespace`` when given: ``ip -n`` style, through
    ``nsenter`` for the others) and return its output; a failure raises with its message."""
    command = list(argv)
    if namespace is not None:
        if command[0] == "ip":
            command = ["ip", "-n", namespace, *command[1:]]
        elif command[0] == "tc":
            command = ["tc", "-n", namespace, *command[1:]]
        else:
            command = ["nsenter", f"--net={namespace_path(namespace)}", *command]
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise HostsError(f"{command[0]} is not installed: {_install_hint(command[0])}") from exc
    if done.returncode != 0:
        raise HostsError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _install_hint(tool: str) -> str:
    package = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "nsenter": "util-linux"}
    return f"apt-get install {package.get(tool, tool)}"


def namespaces() -> list[str]:
    """The named namespaces that exist (``ip netns list``)."""
    try:
        return sorted(entry.name for entry in NETNS_DIR.iterdir())
    except OSError:
        return []


def processes_in(name: str) -> list[int]:
    """Every process whose network namespace is ``name``'s (its main thread's, from /proc)."""
    inode = namespace_inode(name)
    if inode is None:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "ns" / "net").stat().st_ino == inode:
                    found.append(int(entry.name))
            except OSError:
                continue  # gone, or a kernel thread we may not look at
    return sorted(found)


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the
    pid, it names one process for good, so a recycled pid is never mistaken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])
