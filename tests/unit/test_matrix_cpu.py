"""The matrix's CPU accounting: wrk runs summed per process, and the report's reading of them
(where the all-extracted page spends what the monolith does not)."""

from __future__ import annotations

from typing import Any

from bench.report_head_to_head import cpu_by_process, wrk_order_sentence
from bench.throughput import combine


def _run(requests: int, by_group: dict[str, int]) -> dict[str, Any]:
    total = sum(by_group.values())
    return {
        "requests": requests,
        "seconds": 1.0,
        "cpu_ns": total,
        "cpu_ns_by_group": by_group,
        "wall_seconds": 1.0,
        "latency_p50_us": 1000.0,
        "latency_p99_us": 2000.0,
    }


def test_combine_sums_each_process_over_runs_then_divides_by_all_requests() -> None:
    combined = combine(
        [
            _run(1000, {"monolith": 400_000_000, "posts": 300_000_000}),
            _run(3000, {"monolith": 1_600_000_000, "posts": 900_000_000, "auth": 0}),
        ]
    )

    assert combined["cpu_us_per_request_by_group"] == {
        "monolith": 500.0,
        "posts": 300.0,
        "auth": 0.0,
    }
    assert combined["cpu_us_per_request"] == 800.0


def test_combine_of_runs_recorded_before_the_split_has_none() -> None:
    run = _run(100, {"monolith": 1})
    del run["cpu_ns_by_group"]

    assert combine([run])["cpu_us_per_request_by_group"] == {}


def _head(page_calls: dict[str, tuple[str, float]]) -> dict[str, Any]:
    def runs(mono: float, split: dict[str, float]) -> dict[str, Any]:
        return {
            "monolith": {"cpu_us_per_request": mono, "cpu_us_per_request_by_group": {}},
            "all-http": {
                "cpu_us_per_request": sum(split.values()),
                "cpu_us_per_request_by_group": split,
            },
        }

    return {
        "page": {
            "server_timing": {
                "all-http": {
                    "domains": {
                        domain: {"mode": mode, "calls_per_request": calls}
                        for domain, (mode, calls) in page_calls.items()
                    }
                }
            }
        },
        "throughput": {
            "post_page": runs(
                500.0, {"monolith": 500.0, "posts": 300.0, "auth": 200.0, "images": 0.0}
            ),
            "post_list": runs(600.0, {"monolith": 450.0, "posts": 400.0}),
        },
    }


def test_the_page_line_names_the_gateway_skips_idle_services_and_prices_each_call() -> None:
    lines = cpu_by_process(_head({"posts": ("http", 1.0), "auth": ("http", 1.0)}))
    page = next(line for line in lines if line.startswith("- post page"))

    assert "the gateway 500 µs, posts 300 µs, auth 200 µs" in page
    assert "images" not in page
    # (1000 - 500) µs more than the monolith, over two extracted calls
    assert "250 µs of CPU per call" in page
    listing = next(line for line in lines if line.startswith("- post list"))
    assert "per call" not in listing


def test_no_split_recorded_no_section() -> None:
    head = _head({})
    for runs in head["throughput"].values():
        runs["all-http"]["cpu_us_per_request_by_group"] = {}

    assert cpu_by_process(head) == []


def test_the_wrk_runs_order_is_told_as_it_ran() -> None:
    head = {"wrk_order": [["monolith", "post_page"], ["all-http", "post_page"], ["lean", "x"]]}

    assert wrk_order_sentence(head).startswith(
        "The runs went in this order: monolith post page, all extracted post page, lean route x;"
    )
