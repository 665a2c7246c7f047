"""The report's data-duplication section (``bench/report_duplication.py``) from hand-written
results: the numbers it was given appear, a lost rename is said out loud, no data → no section."""

from __future__ import annotations

import copy
from typing import Any

from bench.report_duplication import duplication_section


def _timing(*calls: tuple[str, str, float]) -> dict[str, Any]:
    """A Server-Timing summary of calls (label, mode, median ms), one per request each."""
    return {
        "requests": 10,
        "total_median_ms": 1.0,
        "domains": {
            label.partition(".")[0]: {
                "median_ms": ms,
                "service_median_ms": None,
                "calls_per_request": 1.0,
                "calls": [label],
                "mode": mode,
            }
            for label, mode, ms in calls
        },
    }


def _pages(n: int, p50_us: float, max_us: float, auth_ms: float) -> dict[str, Any]:
    return {
        "p50": p50_us,
        "p95": max_us,
        "p99": max_us,
        "min": p50_us,
        "n": n,
        "max": max_us,
        "auth_call_ms": auth_ms,
    }


def _results() -> dict[str, Any]:
    waiting = _pages(40, 201_000.0, 244_000.0, 198.0)
    fast = _pages(200, 1_420.0, 2_700.0, 0.04)
    return {
        "duplication": {
            "placement": {"monolith": ["1"], "auth": ["1"], "posts": ["1"]},
            "events": {"broker": "inline"},
            "staleness": {
                "planned": 30,
                "renames": 30,
                "caught_up": 30,
                "never_caught_up": 0,
                "bound_seconds": 10.0,
                "stopped_early": False,
                "lag_ms": {"p50": 6.25, "p90": 8.75, "max": 14.5, "min": 3.0},
                "lags_ms": [6.25] * 30,
                "first_read_ms": {"p50": 5.5, "p90": 8.0, "max": 12.0, "min": 1.0},
                "control_read_ms": {"p50": 1.25, "p90": 1.5, "max": 2.0, "min": 1.0},
                "first_read_fresh": 27,
                "reads": [1] * 27 + [2, 2, 3],
                "poll_pause_ms": 0.5,
                "page_new_name_at_once": 30,
                "page_copy_stale": 2,
            },
            "calls": {
                "list": {
                    "calls": ["posts.list_posts"],
                    "server_timing": _timing(("posts.list_posts", "http", 0.5)),
                    "latency": _pages(10, 1_100.0, 1_300.0, 0.0),
                },
                "page": {
                    "calls": ["auth.get_user", "posts.get_post_with_comments"],
                    "server_timing": _timing(
                        ("auth.get_user", "http", 0.375),
                        ("posts.get_post_with_comments", "http", 0.4),
                    ),
                },
            },
            "fallback": {
                "path": "/api/posts/<id>",
                "up": _pages(200, 1_290.0, 9_560.0, 0.38),
                "down": {
                    "pages": 240,
                    "all": _pages(240, 1_600.0, 244_000.0, 0.05),
                    "waiting": waiting,
                    "failing_fast": fast,
                    "retried": 40,
                    "fast_after_seconds": 8.3,
                    "bound_seconds": 60.0,
                },
                "stopped": "kill",
                "health": {"breaker": "open", "error": "circuit open: failing fast"},
            },
            "others_cpu": 0.01,
        }
    }


def _text(results: dict[str, Any]) -> str:
    return "\n".join(duplication_section(results))


def test_no_duplication_results_no_section() -> None:
    assert duplication_section({}) == []
    assert duplication_section({"duplication": None}) == []


def test_the_lag_table_and_the_fallback_table_carry_the_numbers() -> None:
    text = _text(_results())

    assert text.startswith("## 8. Data duplication")
    assert "| lag: the list showed the new name, at most | 6.25 ms | 8.75 ms | 14.5 ms |" in text
    assert "| the first read of the list took | 5.50 ms | 8.00 ms | 12.0 ms |" in text
    assert "| up | 200 | 1.29 ms | 9.56 ms | 9.56 ms | 380 µs |" in text
    assert "| killed: breaker open (fails fast) | 200 | 1.42 ms |" in text
    assert "| killed: until the breaker opened (each call retried) | 40 | 201 ms |" in text
    assert "8.3 s after the kill, after 40 pages" in text
    assert "every rename caught up: 30 of 30 within 10 s" in text
    assert "never caught up" not in text
    assert "in 27 of 30 renames that caught up; the others took up to 3 reads, and" in text
    assert "| the same read after a PATCH with no change (no event) | 1.25 ms |" in text
    assert "a PATCH that changes nothing (the same name again, no event) 1.25 ms" in text
    assert "a quiet read of the list takes 1.10 ms" in text
    assert "the difference is the event's path" in text


def test_the_list_calls_and_the_event_path_are_named() -> None:
    text = _text(_results())

    assert "`GET /api/posts` calls `posts.list_posts` (http), no call to auth" in text
    assert "`auth.get_user` (http), `posts.get_post_with_comments` (http)" in text
    assert "The page's call to auth takes 380 µs (median" in text
    assert "long-polled `GET /events`" in text
    assert "`POST /events` to the posts service" in text


def test_plain_words_say_what_the_numbers_mean() -> None:
    text = _text(_results())

    assert "**In plain words**: the copy lags a rename by at most 6.25 ms" in text
    assert "14.5 ms at worst" in text
    assert "the list never asks auth" in text
    assert "survives auth being down: 1.42 ms with the copied name against 1.29 ms" in text
    assert "for 8.3 s after auth died a page took 201 ms, retrying auth" in text


def test_renames_that_never_caught_up_are_counted() -> None:
    results = copy.deepcopy(_results())
    stale = results["duplication"]["staleness"]
    stale.update(caught_up=27, never_caught_up=3, stopped_early=True)

    text = _text(results)

    assert "**3 of 30 renames never caught up within 10 s**" in text
    assert "the copy had stopped following" in text
    assert "and 3 renames never reached it" in text
    assert "every rename caught up" not in text


def test_no_rename_caught_up_leaves_no_lag_table() -> None:
    results = copy.deepcopy(_results())
    stale = results["duplication"]["staleness"]
    stale.update(
        renames=3, caught_up=0, never_caught_up=3, lag_ms=None, first_read_fresh=0, reads=[5, 5, 5]
    )

    text = _text(results)

    assert "| lag:" not in text
    assert "**3 of 3 renames never caught up within 10 s**" in text
    assert "the copy never caught up with a rename here" in text
    assert "first read after the PATCH" not in text
