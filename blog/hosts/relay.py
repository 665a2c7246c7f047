"""The lab's one relay program: the delay proxy in front of a service host, and the forwarders
that join the lab's namespaces to the root namespace. ``python -m blog.hosts.relay SPEC``.

A relay listens on some (namespace, address, port), and for each connection it accepts, opens
one to another (namespace, address, port) and copies bytes both ways. A route may carry a link:
a round-trip time and a jitter, applied as half the RTT on each direction.

Why a proxy and not the kernel: this kernel has no netem, so latency is injected in user space.
What the proxy does to be a faithful stand-in for distance:

- **Each byte is late by the one-way delay, never more.** A chunk is stamped when it is read and
  written out at ``stamp + rtt/2 ± jitter/2`` by a timer, so a large upload arriving in many
  chunks is delayed once, not once per chunk; a connection's chunks keep their order (a chunk is
  never due before the one ahead of it: TCP does not reorder a stream).
- **A new connection costs one more round trip**, as TCP's handshake does across a real
  network: the client's handshake with the proxy completes at once on the local bridge, so the
  proxy holds the first bytes until one RTT after it accepted the connection. Without this, a
  client that opens a connection per call would look as cheap as one that keeps it alive.
- **The timers are precise.** asyncio's default selector (epoll) rounds every wait up to the
  next millisecond, which alone would turn a 0.5 ms RTT into 2 ms; this loop uses ``select(2)``,
  whose timeout has microseconds, and the process asks the kernel for a 1 ns timer slack instead
  of the default 50 µs. At 0 ms nothing is timed: a chunk is written as soon as it is read.
- **One thread, no GIL hand-offs**: an asyncio loop with protocols (no coroutine per chunk).
  Measured side by side with threads (a reader and a writer thread per direction, the same
  timers), between the same two hosts with an echo server at 0 ms: 28–29 µs per round trip
  against 36–65 µs, the threads paying for waking each other through the GIL.

The spec (JSON)::

    {"name": "auth", "routes": [{
        "listen": {"netns": "sb-hosts-auth", "host": "198.18.0.11", "port": 3001},
        "connect": {"netns": null, "host": "127.0.0.1", "port": 3001},
        "rtt_ms": 2.0, "jitter_ms": 0.0}]}

``netns: null`` is the namespace the relay runs in. SIGHUP re-reads the spec's links (RTT and
jitter; the listeners stay) and acknowledges the spec's ``generation`` in ``<spec>.applied``;
SIGTERM or SIGINT stops it. With ``--ready-file`` it writes its pid there once every listener is
bound.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import json
import os
import random
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blog.hosts.netns import LAB_NETWORK, HostsError, namespace_path

HIGH_WATER_BYTES = 1 << 20
"""Stop reading a side while more than this waits to be written to the other (flow control)."""
PR_SET_TIMERSLACK = 29
WAKE_EARLY_SECONDS = float(os.environ.get("BLOG_RELAY_WAKE_EARLY_US", "150")) / 1e6
"""A sleeping process wakes up late (tens of µs here, more on a busy VM): the relay's timers
fire this much early and spin until the due time, so a delay is what was asked, not more."""


@dataclass
class Link:
    """A link's distance: every one-way trip costs ``rtt_ms / 2`` plus up to ±``jitter_ms / 2``
    (so a round trip varies within ``rtt ± jitter``); ``jitter_ms <= rtt_ms`` keeps it
    non-negative."""

    rtt_ms: float = 0.0
    jitter_ms: float = 0.0

    def one_way(self, rng: random.Random) -> float:
        """Seconds for one trip."""
        half = self.rtt_ms / 2000.0
        if self.jitter_ms:
            half += rng.uniform(-self.jitter_ms / 4000.0, self.jitter_ms / 4000.0)
        return max(half, 0.0)

    def round_trip(self, rng: random.Random) -> float:
        return self.one_way(rng) + self.one_way(rng)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    netns: str | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Endpoint:
        return cls(str(raw["host"]), int(raw["port"]), raw.get("netns"))


@dataclass
class Route:
    name: str
    listen: Endpoint
    connect: Endpoint
    link: Link


def load_routes(path: Path) -> list[Route]:
    spec = json.loads(path.read_text(encoding="utf-8"))
    routes = []
    for i, raw in enumerate(spec["routes"]):
        routes.append(
            Route(
                name=str(raw.get("name", f"route-{i}")),
                listen=Endpoint.parse(raw["listen"]),
                connect=Endpoint.parse(raw["connect"]),
                link=Link(float(raw.get("rtt_ms", 0.0)), float(raw.get("jitter_ms", 0.0))),
            )
        )
    return routes


class Namespaces:
    """Sockets made in other namespaces: this (the loop's only) thread steps into the namespace,
    creates the socket, and steps back; the socket lives there for good."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}

    def _setns(self, fd: int) -> None:
        if self._libc.setns(fd, 0x40000000) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns: {os.strerror(errno)}")

    def socket(self, netns: str | None) -> socket.socket:
        """A TCP socket (``IPPROTO_TCP`` named: asyncio sets TCP_NODELAY only on sockets that
        say so, and without it Nagle holds a request's body behind its headers until the
        other end's delayed ACK, 40 ms later)."""
        if netns is None:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        fd = self._fds.get(netns)
        if fd is None:
            fd = self._fds[netns] = os.open(namespace_path(netns), os.O_RDONLY | os.O_CLOEXEC)
        self._setns(fd)
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        finally:
            self._setns(self._home)

    def in_lab(self, netns: str | None) -> bool:
        """Whether sockets made for ``netns`` live in a named (lab) namespace."""
        if netns is not None:
            return True
        home = os.fstat(self._home).st_ino
        with contextlib.suppress(OSError):
            for entry in Path("/run/netns").iterdir():
                with contextlib.suppress(OSError):
                    if entry.stat().st_ino == home:
                        return True
        return False


class Direction:
    """One direction of one connection: chunks waiting for their due time, written in order."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        link: Callable[[], Link],
        rng: random.Random,
        opened_at: float,
        on_finished: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._on_finished = on_finished
        self._link = link
        self._rng = rng
        self._opened_at = opened_at  # no byte arrives before the handshake's round trip is over
        self._queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._last_due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.target: asyncio.Transport | None = None  # None while the upstream connects
        self.finished = False  # the EOF went through

    def push(self, data: bytes | None) -> None:
        """``data`` was just read (None: the sender's EOF)."""
        now = self._loop.time()
        delay = self._link().one_way(self._rng)
        due = max(now, self._opened_at) + delay if delay or self._opened_at > now else now
        due = max(due, self._last_due)
        self._last_due = due
        if not self._queue and self.target is not None and due <= now:
            self._write(data)  # nothing to wait for: no timer, no queue
            return
        self._queue.append((due, data))
        if self._timer is None and self.target is not None:
            self._schedule()

    def attach(self, target: asyncio.Transport) -> None:
        self.target = target
        if self._queue and self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        self._timer = self._loop.call_at(self._queue[0][0] - WAKE_EARLY_SECONDS, self._flush)

    def _flush(self) -> None:
        self._timer = None
        due = self._queue[0][0]
        now = self._loop.time()
        while now < due:  # woke early on purpose: spin the last stretch, to the microsecond
            now = self._loop.time()
        while self._queue and self._queue[0][0] <= now:
            self._write(self._queue.popleft()[1])
        if self._queue:
            self._schedule()

    def _write(self, data: bytes | None) -> None:
        assert self.target is not None
        closing = self.target.is_closing()  # the receiver went away: drop what was for it
        if data is not None:
            if not closing:
                self.target.write(data)
            return
        if not closing and self.target.can_write_eof():
            self.target.write_eof()
        self.finished = True
        self._on_finished()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class Side(asyncio.Protocol):
    """One socket of a relayed connection; what it reads goes to ``outbound``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        self.outbound: Direction | None = None
        self.peer: Side | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # every chunk goes out when it is due, never held for an ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.outbound is not None
        self.outbound.push(data)

    def eof_received(self) -> bool:
        self.end()
        return True  # half-closed: the other direction may still be talking

    def end(self) -> None:
        """This side sent all it will send: its EOF follows its last bytes, as late as they."""
        if not self.eof:
            self.eof = True
            assert self.outbound is not None
            self.outbound.push(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.lost(self, exc)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Connection:
    """A client's connection and the relay's connection upstream, joined."""

    def __init__(self, relay: Relay, route: Route) -> None:
        self.relay = relay
        self.route = route
        self.client = Side(self)
        self.upstream = Side(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.closed = False
        self._connecting: asyncio.Task[None] | None = None

    def accepted(self) -> Side:
        loop = self.relay.loop
        rng = self.relay.rng
        link = self.relay.link_of(self.route.name)
        now = loop.time()
        handshake = link().round_trip(rng) if link().rtt_ms else 0.0
        self.client.outbound = Direction(loop, link, rng, now + handshake, self.maybe_done)
        self.upstream.outbound = Direction(loop, link, rng, now, self.maybe_done)
        self.relay.connections.add(self)
        self.relay.accepted += 1
        self._connecting = loop.create_task(self._connect())  # held: the loop keeps weak refs
        return self.client

    async def _connect(self) -> None:
        loop = self.relay.loop
        target = self.route.connect
        sock = self.relay.namespaces.socket(target.netns)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (target.host, target.port))
            await loop.create_connection(lambda: self.upstream, sock=sock)
        except OSError as exc:
            sock.close()
            print(f"{self.route.name}: cannot reach {target.host}:{target.port}: {exc}", flush=True)
            self.abort()
            return
        if self.closed:
            self.abort()
            return
        assert self.client.outbound is not None and self.upstream.outbound is not None
        assert self.client.transport is not None and self.upstream.transport is not None
        self.client.outbound.attach(self.upstream.transport)
        self.upstream.outbound.attach(self.client.transport)

    def maybe_done(self) -> None:
        """Close once both sides said EOF and both EOFs went through."""
        a, b = self.client, self.upstream
        if (
            a.eof
            and b.eof
            and a.outbound is not None
            and b.outbound is not None
            and a.outbound.finished
            and b.outbound.finished
        ):
            self.close()

    def lost(self, side: Side, exc: Exception | None) -> None:
        if self.closed:
            return
        if exc is not None or side.outbound is None:
            self.abort()  # a reset: pass it on
            return
        side.end()  # closed without a FIN read first: the same as one
        self.maybe_done()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.close()
        self.relay.connections.discard(self)

    def abort(self) -> None:
        self.closed = True
        for side in (self.client, self.upstream):
            if side.outbound is not None:
                side.outbound.cancel()
            if side.transport is not None:
                side.transport.abort()
        self.relay.connections.discard(self)


class Relay:
    def __init__(self, spec: Path) -> None:
        self.spec = spec
        self.routes = load_routes(spec)
        self.links = {route.name: route.link for route in self.routes}
        self.loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
        self.rng = random.Random()
        self.namespaces = Namespaces()
        self.connections: set[Connection] = set()
        self.servers: list[asyncio.AbstractServer] = []
        self.accepted = 0
        self._stopped = asyncio.Event()

    def link_of(self, name: str) -> Callable[[], Link]:
        return lambda: self.links[name]

    def reload(self) -> None:
        """SIGHUP: take the spec's links (the listeners stay), then acknowledge the spec's
        ``generation`` in ``<spec>.applied`` so whoever changed them knows they are in force."""
        try:
            routes = load_routes(self.spec)
            generation = int(json.loads(self.spec.read_text(encoding="utf-8")).get("generation", 0))
        except (OSError, ValueError, KeyError) as exc:
            print(f"links unchanged: cannot read {self.spec}: {exc}", flush=True)
            return
        for route in routes:
            if route.name in self.links:
                self.links[route.name] = route.link
        applied = self.spec.with_suffix(".applied")
        scratch = applied.with_suffix(".applied-tmp")
        scratch.write_text(str(generation), encoding="utf-8")
        scratch.replace(applied)
        print(f"links: {json.dumps({n: vars(k) for n, k in self.links.items()})}", flush=True)

    def check(self) -> None:
        for route in self.routes:
            for end in (route.listen, route.connect):
                lab = socket.inet_aton(end.host)
                if _in_lab_network(lab) and not self.namespaces.in_lab(end.netns):
                    raise HostsError(
                        f"{route.name}: {end.host} is a lab address, and would be used from "
                        "outside the lab's namespaces"
                    )

    async def start(self) -> None:
        self.check()
        for route in self.routes:
            sock = self.namespaces.socket(route.listen.netns)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((route.listen.host, route.listen.port))
            sock.listen(512)
            sock.setblocking(False)

            def factory(route: Route = route) -> Side:
                return Connection(self, route).accepted()

            self.servers.append(await self.loop.create_server(factory, sock=sock))

    async def serve(self, ready_file: Path | None) -> None:
        await self.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stopped.set)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        names = ", ".join(
            f"{r.listen.host}:{r.listen.port} -> {r.connect.host}:{r.connect.port} "
            f"(rtt {r.link.rtt_ms:g} ms, jitter {r.link.jitter_ms:g} ms)"
            for r in self.routes
        )
        print(f"relay ready: {names}", flush=True)
        if ready_file is not None:
            ready_file.write_text(str(os.getpid()), encoding="utf-8")
        await self._stopped.wait()
        for server in self.servers:
            server.close()
        for connection in list(self.connections):
            connection.abort()


def _in_lab_network(packed: bytes) -> bool:
    return int.from_bytes(packed, "big") >> (32 - LAB_NETWORK.prefixlen) == (
        int(LAB_NETWORK.network_address) >> (32 - LAB_NETWORK.prefixlen)
    )


def precise_timers() -> None:
    """Ask for a 1 ns timer slack (Linux's default, 50 µs, would make every delay that late),
    and for the real-time scheduler's lowest priority: a network does not wait for a CPU, so
    the proxy standing in for one should not queue behind the hosts' processes either (it runs
    for microseconds per chunk; the kernel still keeps 5 % of every second for the others)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blog.hosts.relay", description=__doc__)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    precise_timers()
    relay = Relay(args.spec)
    try:
        relay.loop.run_until_complete(relay.serve(args.ready_file))
    except (OSError, HostsError) as exc:
        print(f"relay {args.spec}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        relay.loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
