"""The report's data-duplication section: what posts' copy of an author's name costs (how long
it lags a rename) and what it buys (the list never asks auth; the post page survives auth being
down), from ``results["duplication"]`` (``bench/duplication.py``)."""

from __future__ import annotations

from typing import Any

from bench.report_tables import others, table
from bench.targets import fmt_us as us

EVENT_PATHS = {
    "inline": (
        "no broker (the lab runs `events.broker: inline`): the rename commits with its event in "
        "auth's outbox; the monolith's feed puller, parked on the auth service's long-polled "
        "`GET /events`, gets it at the commit and hands it to the monolith's in-process bus, "
        "whose posts consumer is the posts client: `POST /events` to the posts service, which "
        "rewrites the name on the author's posts and comments"
    ),
    "rabbitmq": (
        "RabbitMQ: the rename commits with its event in auth's outbox; auth's relay publishes it "
        "to the `events` exchange, and the posts service's consumer takes it from "
        "`posts_service_queue` and rewrites the name on the author's posts and comments"
    ),
}


def event_path(broker: str) -> str:
    """How ``user.renamed`` travels from auth to posts' copy under ``broker``."""
    return EVENT_PATHS.get(broker, f"`events.broker: {broker}`")


def _ms(value: float) -> str:
    return us(value * 1000)


def _calls(info: dict[str, Any]) -> str:
    """An endpoint's domain calls with their mode, from its Server-Timing summary."""
    domains = info["server_timing"].get("domains", {})
    listed = [
        f"`{call}` ({d['mode']})" for d in domains.values() for call in d["calls"] if d["calls"]
    ]
    return ", ".join(listed) or "none"


def _auth_saving(data: dict[str, Any]) -> str:
    """The page's call to auth, which the list does not make: its median over the pages read
    with auth up (the Server-Timing summary's when those are missing)."""
    ms = (data["fallback"].get("up") or {}).get("auth_call_ms")
    if ms is None:
        auth = data["calls"]["page"]["server_timing"].get("domains", {}).get("auth")
        ms = auth["median_ms"] if auth else None
    if ms is None:
        return ""
    return (
        f" The page's call to auth takes {_ms(ms)} (median, its Server-Timing): that is what "
        "the list would pay again for every author it shows, if it asked auth instead of "
        "reading the copy."
    )


def _first_reads(stale: dict[str, Any], quiet: dict[str, Any] | None) -> str:
    """How many renames the very first read of the list already showed: then the lag is shorter
    than that read, which right after a rename shares the server CPU with the event's path."""
    fresh, reads = stale.get("first_read_fresh"), stale.get("reads")
    if fresh is None or not stale["caught_up"]:
        return ""
    text = (
        f"- the first read of the list after the PATCH already showed the new name in {fresh} "
        f"of {stale['caught_up']} renames that caught up"
    )
    if reads and fresh < stale["caught_up"]:
        text += (
            f"; the others took up to {max(reads)} reads, and their lag is coarser by one post "
            "page (its check sits between the first read and the second)"
        )
    first, control = stale.get("first_read_ms"), stale.get("control_read_ms")
    if fresh and first:
        text += (
            ". When it did, the copy changed before that read ended, and the loop cannot tell "
            f"it more finely: right after a rename the read took {_ms(first['p50'])} (p50)"
        )
        if control:
            text += (
                f", right after a PATCH that changes nothing (the same name again, no event) "
                f"{_ms(control['p50'])}"
            )
        if quiet:
            text += f", and a quiet read of the list takes {us(quiet['p50'])}"
        if control and first["p50"] > control["p50"]:
            text += (
                ": the difference is the event's path, running beside the read on the same "
                "server CPU"
            )
    return text + "."


def _staleness(stale: dict[str, Any], quiet: dict[str, Any] | None) -> list[str]:
    lag, first = stale.get("lag_ms"), stale.get("first_read_ms")
    never = stale["never_caught_up"]
    bound = f"{stale['bound_seconds']:g} s"
    lines = [
        f"**What the copy costs: the staleness window.** {stale['renames']} renames of one user "
        "(`PATCH /api/me` with their token), one after another; after each, the post list "
        "(`GET /api/posts`, which shows the copy) read at once and again until it showed the "
        f"new name, {stale['poll_pause_ms']:g} ms between reads, each rename bounded to {bound}. "
        "The lag runs from the moment the PATCH returned to the end of the first read that "
        "showed the new name: an upper bound, the copy changed somewhere before it.",
        "",
    ]
    if lag:
        rows = [["lag: the list showed the new name, at most", *(_ms(lag[k]) for k in LAG_KEYS)]]
        if first:
            rows.append(["the first read of the list took", *(_ms(first[k]) for k in LAG_KEYS)])
        control = stale.get("control_read_ms")
        if control:
            rows.append(
                [
                    "the same read after a PATCH with no change (no event)",
                    *(_ms(control[k]) for k in LAG_KEYS),
                ]
            )
        lines += [*table(["after a rename", "p50", "p90", "max"], rows), ""]
    if never:
        ending = " (then the part stopped: the copy had stopped following)"
        lines.append(
            f"- **{never} of {stale['renames']} renames never caught up within {bound}**"
            f"{ending if stale.get('stopped_early') else ''}: the list kept showing the old "
            "name. The README expects milliseconds: a rename that does not arrive within "
            f"{bound} points at the event's path (auth's outbox, its delivery, the posts "
            "consumer), not at a slow copy."
        )
    else:
        lines.append(
            f"- every rename caught up: {stale['caught_up']} of {stale['renames']} within {bound}."
        )
    first_reads = _first_reads(stale, quiet)
    lines += [
        *([first_reads] if first_reads else []),
        f"- the post page (`GET /api/posts/<id>`), read once right after each rename's first "
        f'list read, showed the new name from auth (`"source": "auth"`) '
        f"{stale['page_new_name_at_once']} times out of {stale['renames']}; in "
        f"{stale['page_copy_stale']} of them the post's own copy in the same answer still held "
        "the old name.",
        "",
    ]
    return lines


LAG_KEYS = ("p50", "p90", "max")


def _row(label: str, pages: dict[str, Any] | None) -> list[str]:
    if pages is None:
        return [label, "0", "–", "–", "–", "–"]
    auth = pages.get("auth_call_ms")
    return [
        label,
        str(pages["n"]),
        us(pages["p50"]),
        us(pages["p95"]),
        us(pages["max"]),
        _ms(auth) if auth is not None else "–",
    ]


def _fallback(fallback: dict[str, Any]) -> list[str]:
    up, down = fallback["up"], fallback["down"]
    fast_after = down.get("fast_after_seconds")
    error = (fallback.get("health") or {}).get("error")
    said = f' `/api/health` then said of auth: "{error}".' if error else ""
    if fast_after is None:
        opened = (
            f"**The breaker never opened** within {down['bound_seconds']:g} s: every page "
            "waited for the transport's retries."
        )
    else:
        opened = (
            f"The first page that no longer waited for retries came {fast_after:.1f} s after "
            f"the kill, after {down['retried']} pages that did: the breaker opens on a failure "
            "rate over its window, which first has to forget the successful calls made just "
            "before."
        )
    return [
        f"- **the post page with auth down** (`{fallback['path']}`, one keep-alive client): "
        f"{up['n']} pages with auth up, then the auth service killed "
        f"(`ServerProcess.{fallback['stopped']}()`) and the page read again: all "
        f"{down['pages']} answered 200 with the author from the post's copy "
        f'(`"source": "post"`). {opened}{said}',
        "",
        *table(
            ["auth", "pages", "p50", "p95", "max", "its auth call (median)"],
            [
                _row("up", up),
                _row("killed: until the breaker opened (each call retried)", down["waiting"]),
                _row("killed: breaker open (fails fast)", down["failing_fast"]),
            ],
        ),
        "",
    ]


def _plain_words(data: dict[str, Any]) -> str:
    """The numbers, for a learner, in one or two sentences."""
    stale, fallback = data["staleness"], data["fallback"]
    lag = stale.get("lag_ms")
    if lag:
        cost = (
            f"the copy lags a rename by at most {_ms(lag['p50'])} (p50; {_ms(lag['max'])} at "
            "worst here)"
        )
    else:
        cost = "the copy never caught up with a rename here"
    if stale["never_caught_up"]:
        cost += f", and {stale['never_caught_up']} renames never reached it"
    fast = fallback["down"]["failing_fast"]
    waiting = fallback["down"]["waiting"]
    survive = (
        f"the post page survives auth being down: {us(fast['p50'])} with the copied name "
        f"against {us(fallback['up']['p50'])} with auth up"
        if fast
        else "the post page still answers with auth down, with the copied name"
    )
    after = fallback["down"].get("fast_after_seconds")
    if waiting:
        during = f"for {after:.1f} s after auth died" if after is not None else "until then"
        survive += (
            f", once the breaker has opened ({during} a page took {us(waiting['p50'])}, "
            "retrying auth)"
        )
    return (
        f"**In plain words**: {cost}: the time the event takes from auth to posts' copy, "
        "during which the list still shows the old name while the post page already shows the "
        f"new one. In exchange the list never asks auth, and {survive}."
    )


def duplication_section(results: dict[str, Any]) -> list[str]:
    data = results.get("duplication")
    if not data:
        return []
    calls = data["calls"]
    placement = ", ".join(f"{g} CPU {','.join(c)}" for g, c in data["placement"].items())
    return [
        "## 8. Data duplication: posts' copy of the author's name, what it costs and buys",
        "",
        "The tutorial's \"데이터 중복 vs 성능\": every post keeps its author's name "
        "(`author_name`), kept current by `user.renamed` events; the post list shows the copy, "
        "the post page asks auth and falls back to the copy when auth cannot answer. "
        f"Everything extracted, as part 4 runs it (placement: {placement}). The event "
        f"travels through {event_path(data['events']['broker'])}. Other work's CPU meanwhile: "
        f"{others(data)}.",
        "",
        *_staleness(data["staleness"], calls["list"].get("latency")),
        "**What the copy buys.**",
        "",
        f"- **the post list asks only posts**: `GET /api/posts` calls {_calls(calls['list'])}, "
        f"no call to auth; the post page calls {_calls(calls['page'])}.{_auth_saving(data)}",
        *_fallback(data["fallback"]),
        _plain_words(data),
        "",
    ]
