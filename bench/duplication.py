"""The tutorial's data-duplication trade-off ("데이터 중복 vs 성능") in numbers, everything
extracted.

Posts keeps its own copy of each author's name (``author_name`` on every post), kept current by
``user.renamed`` events. The post list shows the copy; the post page asks auth and falls back to
the copy (``"source": "post"``) when auth cannot answer. This part measures both sides:

- what the copy costs: after a rename (``PATCH /api/me``), how long the list still shows the
  old name (the staleness window), while the post page shows the new one at once;
- what the copy buys: the list makes no call to auth at all, and the post page keeps answering
  with the auth service stopped.

Events travel as the lab's topology has them: ``events.broker`` is ``inline`` (``lab.configs``
sets it), so no broker is involved. The rename commits with its event in auth's outbox; the
monolith's feed puller (one, elected among its workers) holds a long-poll open on the auth
service's ``GET /events``, which answers at the commit; the puller hands the event to the
monolith's in-process bus, whose posts consumer is the posts client: ``POST /events`` to the
posts service, which rewrites the name on the author's posts and comments.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

from bench.head_to_head import EXTRACTED
from bench.plan import Plan
from bench.sampling import log, stats_us
from bench.topologies import PASSWORD, Running, seed_http, start_topology
from blog.config import Config, load_config
from lab.keepalive import KeepAlive
from lab.server_timing import parse_server_timing, summarize_server_timing
from lab.stats import percentile

POLL_PAUSE_SECONDS = 0.0005
"""Between two reads of the list while waiting for the copy: the poller's requests run on the
same server CPU as the event's whole path, so reading back to back would slow what it measures;
the pause costs at most this much resolution."""
STOP_AFTER_MISSES = 3
"""Renames in a row that never reached the copy: the copy has stopped following, and waiting
out the time bound of every remaining rename would only repeat that."""
RETRIED_MS = 20.0
"""An auth call that took longer than this with auth stopped waited between attempts: a refused
connection on loopback, or an open breaker, answers in well under a millisecond, and the
transport pauses 50 ms or more before a retry."""
DOWN_BOUND_SECONDS = 60.0
"""How long the post page is read with auth stopped: the breaker's failure rate is counted over
a window (``transport.breaker_window_seconds``, 10 s as configured) that must first forget the
successful calls made before; a page that still waits after this says the breaker never
opened."""
TIMING_REQUESTS = 10
"""Requests whose Server-Timing says which domain calls the list and the page make."""


@dataclass(frozen=True)
class Member:
    """The renamed user: their token and their one post."""

    headers: dict[str, str]
    post_id: int


@dataclass(frozen=True)
class Lag:
    """One rename: when the list first showed the new name, in ms after the PATCH returned
    (the end of that read: an upper bound, the copy changed somewhere before it), or None when
    it never did within the time bound; and how many reads it took."""

    ms: float | None
    reads: int
    first_read_ms: float
    """How long the first read took: right after a rename it shares the server CPU with the
    event's whole path, and takes longer than a quiet read."""
    copy_stale_on_page: bool
    """The post page, read right after the first read, still carried the old name in the
    post's own copy while its author (from auth) had the new one."""
    control_read_ms: float
    """The same read right after a PATCH that changes nothing (the same name again: no event),
    to tell the event's share of ``first_read_ms`` from the PATCH's own."""


def _get(client: KeepAlive, path: str) -> tuple[int, Any, str]:
    """Status, decoded JSON body and Server-Timing header of one GET."""
    status, body, headers = client.exchange("GET", path)
    return status, json.loads(body) if body else None, headers.get("Server-Timing") or ""


def _member_with_post(client: KeepAlive) -> Member:
    """A new user (at the configured bcrypt cost) with one post, the newest: first on the list."""
    email = f"dup-{uuid.uuid4().hex[:10]}@example.com"
    account = {"email": email, "name": "Duplicated Name", "password": PASSWORD}
    client.json("POST", "/api/register", account, expect=201)
    token = client.json("POST", "/api/login", {"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    post = {"title": "Whose name is this?", "body": "A post whose author gets renamed."}
    post_id = client.json("POST", "/api/posts", post, headers, expect=201)["id"]
    return Member(headers, post_id)


def _broker(running: Running) -> str:
    """``events.broker`` as the running monolith's config file has it."""
    assert running.monolith.config_path is not None
    return load_config(running.monolith.config_path).events.broker


def _listed_name(client: KeepAlive, post_id: int) -> str:
    """The author name the post list (the first page: the copy) shows for ``post_id``."""
    status, page, _ = _get(client, "/api/posts")
    if status != 200:
        raise AssertionError(f"GET /api/posts: {status}")
    for item in page["items"]:
        if item["id"] == post_id:
            return str(item["author_name"])
    raise AssertionError(f"post {post_id} is not on the list's first page")


def _check_page(client: KeepAlive, post_id: int, name: str) -> bool:
    """The post page right after a rename shows the new name, from auth (README: "the post
    detail page asks auth and shows the new one"); True when the post's own copy in the same
    answer was still the old name."""
    status, page, _ = _get(client, f"/api/posts/{post_id}")
    author = page.get("author", {}) if isinstance(page, dict) else {}
    if status != 200 or author.get("name") != name or author.get("source") != "auth":
        raise AssertionError(
            f"the post page right after a rename to {name!r} showed {status} {author!r}, "
            "not the new name from auth"
        )
    return str(page["post"]["author_name"]) != name


def _rename(client: KeepAlive, member: Member, name: str, bound_seconds: float) -> Lag:
    """Rename ``member``, then read the list until it shows the new name (bounded by
    ``bound_seconds``); the post page is checked once, right after the first read (so that
    the first read starts as soon as the PATCH returned)."""
    client.json("PATCH", "/api/me", {"name": name}, member.headers)
    returned = perf_counter()
    deadline = returned + bound_seconds
    first_read_ms: float | None = None
    stale_on_page: bool | None = None
    reads = 0
    while True:
        started = perf_counter()
        shown = _listed_name(client, member.post_id)
        ended = perf_counter()
        reads += 1
        if first_read_ms is None or stale_on_page is None:  # the first read: check the page
            first_read_ms = (ended - started) * 1000
            stale_on_page = _check_page(client, member.post_id, name)
        if shown == name or perf_counter() >= deadline:
            lag = (ended - returned) * 1000 if shown == name else None
            return Lag(lag, reads, first_read_ms, stale_on_page, _control(client, member, name))
        time.sleep(POLL_PAUSE_SECONDS)


def _control(client: KeepAlive, member: Member, name: str) -> float:
    """The list's first read (ms) right after a PATCH that publishes no event: the user's
    current name again."""
    client.json("PATCH", "/api/me", {"name": name}, member.headers)
    started = perf_counter()
    _listed_name(client, member.post_id)
    return (perf_counter() - started) * 1000


def _ms_stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "max": max(values),
        "min": min(values),
    }


def measure_staleness(client: KeepAlive, member: Member, plan: Plan) -> dict[str, Any]:
    """The staleness window of ``plan.renames`` renames, one after another, each bounded in
    time; stops early when the copy stops following (``STOP_AFTER_MISSES`` in a row)."""
    lags: list[Lag] = []
    misses_in_a_row = 0
    for n in range(plan.renames):
        lag = _rename(
            client, member, f"Renamed {n} {uuid.uuid4().hex[:6]}", plan.rename_catch_up_seconds
        )
        lags.append(lag)
        misses_in_a_row = misses_in_a_row + 1 if lag.ms is None else 0
        if misses_in_a_row >= STOP_AFTER_MISSES:
            log(f"duplication: {misses_in_a_row} renames in a row never reached the copy; stop")
            break
    caught = [lag.ms for lag in lags if lag.ms is not None]
    return {
        "planned": plan.renames,
        "renames": len(lags),
        "caught_up": len(caught),
        "never_caught_up": len(lags) - len(caught),
        "bound_seconds": plan.rename_catch_up_seconds,
        "stopped_early": len(lags) < plan.renames,
        "lag_ms": _ms_stats(caught),
        "lags_ms": [lag.ms for lag in lags],
        "first_read_ms": _ms_stats([lag.first_read_ms for lag in lags]),
        "control_read_ms": _ms_stats([lag.control_read_ms for lag in lags]),
        "first_read_fresh": sum(lag.ms is not None and lag.reads == 1 for lag in lags),
        "reads": [lag.reads for lag in lags],
        "poll_pause_ms": POLL_PAUSE_SECONDS * 1000,
        "page_new_name_at_once": len(lags),
        "page_copy_stale": sum(lag.copy_stale_on_page for lag in lags),
    }


def _calls(client: KeepAlive, path: str) -> dict[str, Any]:
    """The domain calls one endpoint makes (its Server-Timing over ``TIMING_REQUESTS``), and
    its latency then: a quiet read, to set beside the reads made right after a rename."""
    headers, samples = [], []
    for _ in range(TIMING_REQUESTS):
        started = perf_counter_ns()
        status, _, timing = _get(client, path)
        samples.append(perf_counter_ns() - started)
        if status != 200:
            raise AssertionError(f"GET {path}: {status}")
        headers.append(timing)
    summary = summarize_server_timing(headers)
    return {
        "calls": [c for info in summary["domains"].values() for c in info["calls"]],
        "server_timing": summary,
        "latency": stats_us(samples),
    }


def _auth_call_ms(header: str) -> float | None:
    """The page's call to auth, in ms, from one Server-Timing header (None: it made none)."""
    found = [e.ms for e in parse_server_timing(header) if e.label.startswith("auth.")]
    return sum(found) if found else None


def _page(client: KeepAlive, path: str, source: str) -> tuple[float, float | None]:
    """One post page, checked to answer 200 with its author from ``source``: its latency (ns)
    and its call to auth (ms, from Server-Timing)."""
    started = perf_counter_ns()
    status, page, timing = _get(client, path)
    took = perf_counter_ns() - started
    author = page.get("author", {}) if isinstance(page, dict) else {}
    if status != 200 or author.get("source") != source:
        raise AssertionError(
            f"GET {path}: {status} {author!r}, expected 200 with the author from {source}"
        )
    return took, _auth_call_ms(timing)


def _summary(samples: list[float], auth_ms: list[float]) -> dict[str, Any] | None:
    """Latency percentiles (µs) of page samples (ns), and their auth call's median (ms)."""
    if not samples:
        return None
    return {
        **stats_us(samples),
        "max": max(samples) / 1000,
        "auth_call_ms": statistics.median(auth_ms) if auth_ms else None,
    }


def _pages_up(client: KeepAlive, path: str, count: int) -> dict[str, Any]:
    samples, auth_ms = [], []
    for _ in range(count):
        took, called = _page(client, path, "auth")
        samples.append(took)
        if called is not None:
            auth_ms.append(called)
    summary = _summary(samples, auth_ms)
    assert summary is not None
    return summary


def _pages_down(client: KeepAlive, path: str, count: int) -> dict[str, Any]:
    """Post pages from the moment auth died until ``count`` of them no longer waited between
    attempts at auth (its breaker open), bounded by ``DOWN_BOUND_SECONDS``; every one must
    answer 200 with the post's copy of the name. Until the breaker opens each page pays the
    transport's retries; when it opens depends on the breaker's window, which still holds the
    successful calls made just before (a failure rate, not a count)."""
    began = perf_counter()
    waited: tuple[list[float], list[float]] = ([], [])
    fast: tuple[list[float], list[float]] = ([], [])
    first_fast: float | None = None
    while len(fast[0]) < count and perf_counter() - began < DOWN_BOUND_SECONDS:
        took, called = _page(client, path, "post")
        slow = called is not None and called > RETRIED_MS
        if not slow and first_fast is None:
            first_fast = perf_counter() - began
        bucket = waited if slow else fast
        bucket[0].append(took)
        if called is not None:
            bucket[1].append(called)
    every = [*waited[0], *fast[0]]
    return {
        "pages": len(every),
        "all": _summary(every, [*waited[1], *fast[1]]),
        "waiting": _summary(*waited),
        "failing_fast": _summary(*fast),
        "retried": len(waited[0]),
        "fast_after_seconds": first_fast,
        "bound_seconds": DOWN_BOUND_SECONDS,
    }


def _breaker(client: KeepAlive) -> dict[str, Any]:
    """What the gateway's ``/api/health`` says of auth (its breaker; one worker's view)."""
    status, body, _ = _get(client, "/api/health")
    auth = (body or {}).get("domains", {}).get("auth", {}) if status == 200 else {}
    error = auth.get("error")
    if isinstance(error, dict):  # a domain error's JSON: {"code": ..., "message": ...}
        error = error.get("message")
    return {"breaker": auth.get("breaker"), "error": error}


def measure_fallback(
    client: KeepAlive, running: Running, post_id: int, plan: Plan
) -> dict[str, Any]:
    """The post page with auth up, then with the auth service killed (a crash, as the lab ends
    its services): still 200, its author from the post's copy. Auth is not started again:
    nothing after this needs it."""
    path = f"/api/posts/{post_id}"
    _pages_up(client, path, 20)  # warm: connections, caches
    up = _pages_up(client, path, plan.fallback_pages)
    auth = running.services["auth"]
    auth.kill()
    if auth.healthy(timeout=0.5):
        raise AssertionError("the auth service still answers after it was killed")
    down = _pages_down(client, path, plan.fallback_pages)
    return {
        "path": "/api/posts/<id>",
        "up": up,
        "down": down,
        "stopped": "kill",
        "health": _breaker(client),
    }


def measure_duplication(
    base: Config,
    state: Path,
    plan: Plan,
    server_cpus: set[int] | None,
    server_cpus_spec: str,
) -> dict[str, Any]:
    with ExitStack() as stack:
        log("duplication: starting the all-extracted topology")
        running = start_topology(EXTRACTED, base, state, stack, server_cpus, server_cpus_spec)
        client = KeepAlive(running.monolith.port)
        stack.callback(client.close)
        seed = seed_http(client, prefix="dup")
        member = _member_with_post(client)
        broker = _broker(running)
        placement = running.placement()  # read now: the auth service is killed below

        log(f"duplication: {plan.renames} renames, the list read until it shows each")
        staleness = measure_staleness(client, member, plan)

        log("duplication: the calls of the list and of the page (Server-Timing)")
        calls = {
            "list": _calls(client, "/api/posts"),
            "page": _calls(client, f"/api/posts/{seed['detail']}"),
        }

        log(f"duplication: the post page, {plan.fallback_pages} with auth up, then killed")
        fallback = measure_fallback(client, running, seed["detail"], plan)
        return {
            "placement": placement,
            "events": {"broker": broker},
            "staleness": staleness,
            "calls": calls,
            "fallback": fallback,
        }
