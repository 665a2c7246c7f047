"""The latency lab's shared pieces: which topology to run, its config, its extracted services,
the 1-megapixel JPEG, and reading ``Server-Timing``.

Used by the latency suite (``tests/latency``) and by ``bench/matrix.py``; no fixtures here.

A topology is the set of domains that run extracted (``services.<d>.mode: http``). It comes from
the config file (``BLOG_CONFIG`` or ``config.yaml``) unless ``BLOG_BENCH_TOPOLOGY`` names one:
``monolith``, ``auth-http``, ``posts-http``, ``images-http``, ``payments-http``, ``all-http``, or a
combination such as ``auth+images-http``.

The lab never leaves the machine: whatever the config file says, the benchmarked monolith keeps
payments on the fake provider, email in the inbox, images on local disk and events inline, and
every database and image folder lives in a temporary directory. Everything that shapes the cost
of a call (bcrypt cost, thumbnail size, JPEG quality, page sizes, transport timeouts and retries)
is taken from the config file as it is.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blog.config import Config, load_config
from blog.domains import HTTP_SERVICES as HTTP_DOMAINS
from tests.support import ServiceProcess

TOPOLOGY_ENV = "BLOG_BENCH_TOPOLOGY"
SERVER_CPUS_ENV = "BLOG_BENCH_SERVER_CPUS"
"""CPUs (``taskset`` list syntax: ``1`` or ``0,1`` or ``2-3``) to pin the extracted services to."""

MATRIX: tuple[str, ...] = (
    "monolith",
    *(f"{domain}-http" for domain in HTTP_DOMAINS),
    "all-http",
)

JPEG_SIZE = (1155, 866)  # 1.0 megapixel, 4:3
LAB_LOG_LEVEL = "WARNING"  # no access log on either side: the lab compares stacks, not log I/O


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Topology:
    name: str
    extracted: tuple[str, ...]

    @property
    def is_monolith(self) -> bool:
        return not self.extracted


def topology_name(extracted: Iterable[str]) -> str:
    chosen = [d for d in HTTP_DOMAINS if d in set(extracted)]
    if not chosen:
        return "monolith"
    if len(chosen) == len(HTTP_DOMAINS):
        return "all-http"
    return "+".join(chosen) + "-http"


def parse_topology(name: str) -> Topology:
    name = name.strip()
    if name == "monolith":
        return Topology(name, ())
    if name == "all-http":
        return Topology(name, HTTP_DOMAINS)
    if name.endswith("-http"):
        domains = tuple(name[: -len("-http")].split("+"))
        unknown = [d for d in domains if d not in HTTP_DOMAINS]
        if not unknown and len(set(domains)) == len(domains):
            return Topology(topology_name(domains), tuple(d for d in HTTP_DOMAINS if d in domains))
    raise ValueError(
        f"{TOPOLOGY_ENV}={name!r} is not a topology; use one of {', '.join(MATRIX)} "
        f"(or a combination such as auth+images-http)"
    )


def current_topology(environ: Mapping[str, str] | None = None) -> Topology:
    """``BLOG_BENCH_TOPOLOGY`` if set, else what the config file's ``services.<d>.mode`` say."""
    environ = os.environ if environ is None else environ
    if environ.get(TOPOLOGY_ENV, "").strip():
        return parse_topology(environ[TOPOLOGY_ENV])
    config = load_config(environ=environ)
    extracted = [d for d in HTTP_DOMAINS if config.mode(d) == "http"]
    return Topology(topology_name(extracted), tuple(extracted))


# --------------------------------------------------------------------------- configuration


def _plain(section: Any) -> dict[str, Any]:
    """A config section as file-shaped overrides: secrets (env-only fields) left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        if "env" in f.metadata or f.metadata.get("internal"):
            continue
        value = getattr(section, f.name)
        out[f.name] = _plain(value) if dataclasses.is_dataclass(value) else value
    return out


def cost_settings(config: Config) -> dict[str, Any]:
    """The configured settings that shape a call's cost, for the monolith and every service."""
    images = _plain(config.images)
    images.pop("local_dir")
    images["storage"] = "local"
    return {
        "auth": _plain(config.auth),
        "posts": _plain(config.posts),
        "images": images,
        "transport": _plain(config.transport),
        "max_json_bytes": config.max_json_bytes,
        "log_level": LAB_LOG_LEVEL,
    }


def monolith_overrides(
    base: Config,
    state: Path,
    services: Mapping[str, str],
    *,
    modes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Overrides of the config file for a lab monolith whose state lives in ``state``.

    ``services`` maps each extracted domain to its service's URL; every other domain runs
    in-process.
    """
    settings = cost_settings(base)
    settings["images"] = {**settings["images"], "local_dir": str(state / "images")}
    return {
        **settings,
        "database_url": f"sqlite:///{state / 'blog.db'}",
        "payments": {"provider": "fake", "stripe_api_base": None},
        "email": {"transport": "inbox"},
        "events": {"broker": "inline"},
        "services": {
            domain: (
                {"mode": "http", "url": services[domain]}
                if domain in services
                else {"mode": (modes or {}).get(domain, "inprocess")}
            )
            for domain in (*HTTP_DOMAINS, "email")
        },
    }


def lab_config(base: Config, state: Path, services: Mapping[str, str]) -> Config:
    return load_config(base.source, overrides=monolith_overrides(base, state, services))


def base_config() -> Config:
    """The config file the user runs (``BLOG_CONFIG`` or ``config.yaml``)."""
    return load_config()


# --------------------------------------------------------------------------- CPUs and services


def parse_cpus(spec: str | None) -> set[int] | None:
    """``"1"``, ``"0,2"``, ``"2-3"`` → a CPU set; empty → None (no pinning)."""
    if not spec or not spec.strip():
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.strip().partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Run the block (and any process it starts) on ``cpus``: a child inherits the affinity of
    the thread that forks it, and a gunicorn master passes it on to its workers."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def start_services(
    domains: Sequence[str],
    base: Config,
    state: Path,
    stack: ExitStack,
    cpus: set[int] | None = None,
) -> dict[str, ServiceProcess]:
    """Each domain's extracted service under gunicorn (own port, own database, the configured
    cost settings), started side by side and killed when ``stack`` closes.

    Killed, not stopped: the monolith's event-feed pullers leave a long poll (up to 10 s) in
    flight, and a gthread worker's graceful exit waits for it; the lab's services hold only
    throw-away data.
    """
    services = {
        domain: ServiceProcess(domain, state / f"{domain}-service", **cost_settings(base))
        for domain in domains
    }

    def start(service: ServiceProcess) -> None:
        with pinned(cpus):  # this thread only: the affinity goes to the process it forks
            service.start()

    for service in services.values():
        stack.callback(service.kill)
    with ThreadPoolExecutor(max_workers=max(len(services), 1)) as pool:
        list(pool.map(start, services.values()))
    return services


# --------------------------------------------------------------------------- payloads


def jpeg_1mp(size: tuple[int, int] = JPEG_SIZE, quality: int = 90) -> bytes:
    """A photo-like JPEG (gradients plus blurred noise, so it compresses like a photo, not like
    a flat colour): 1155×866 at quality 90 is about 200 KB. Deterministic."""
    from PIL import Image, ImageFilter

    width, height = size
    noise = Image.frombytes("L", size, random.Random(width * height).randbytes(width * height))
    noise = noise.filter(ImageFilter.GaussianBlur(1.2))
    red = Image.linear_gradient("L").resize(size)
    blue = Image.radial_gradient("L").resize(size)
    channels = (
        Image.blend(red, noise, 0.35),
        Image.blend(noise, red, 0.5),
        Image.blend(blue, noise, 0.35),
    )
    image = Image.merge("RGB", channels)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def multipart_image(data: bytes, filename: str = "photo.jpg") -> tuple[bytes, str]:
    """``(body, content_type)`` of an upload, encoded once so no round pays for the encoding."""
    import urllib3

    return urllib3.encode_multipart_formdata({"image": (filename, data, "image/jpeg")})


# --------------------------------------------------------------------------- Server-Timing


def parse_server_timing(header: str) -> list[tuple[str, str, float]]:
    """``auth.verify;dur=0.42;desc="http", total;dur=1.1`` → [(label, desc, ms), ...]."""
    entries = []
    for entry in header.split(","):
        label, *params = (p.strip() for p in entry.split(";"))
        values = dict(p.partition("=")[::2] for p in params)
        entries.append((label, values.get("desc", "").strip('"'), float(values.get("dur", 0))))
    return entries


def summarize_server_timing(headers: Sequence[str]) -> dict[str, Any]:
    """Per domain: the median over requests of the summed ``dur`` of that domain's calls, the
    calls per request and the mode; plus the median ``total`` (the gateway's whole request)."""
    per_domain: dict[str, list[float]] = {}
    calls: dict[str, set[str]] = {}
    modes: dict[str, str] = {}
    totals: list[float] = []
    counts: dict[str, list[int]] = {}
    for header in headers:
        request_sums: dict[str, float] = {}
        request_counts: dict[str, int] = {}
        for label, desc, ms in parse_server_timing(header):
            if label == "total":
                totals.append(ms)
                continue
            domain = label.partition(".")[0]
            request_sums[domain] = request_sums.get(domain, 0.0) + ms
            request_counts[domain] = request_counts.get(domain, 0) + 1
            calls.setdefault(domain, set()).add(label)
            modes[domain] = desc
        for domain, total in request_sums.items():
            per_domain.setdefault(domain, []).append(total)
            counts.setdefault(domain, []).append(request_counts[domain])
    domains = {
        domain: {
            "median_ms": statistics.median(values),
            "calls_per_request": statistics.median(counts[domain]),
            "calls": sorted(calls[domain]),
            "mode": modes[domain],
        }
        for domain, values in sorted(per_domain.items())
    }
    return {
        "requests": len(headers),
        "total_median_ms": statistics.median(totals) if totals else None,
        "domains": domains,
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
