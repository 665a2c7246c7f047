"""Issue 9's targets as the report judges them (``bench/targets.py``): each verdict from a
hand-written run's results, on both sides of its limit, and "not measured" when the run skipped
the part it needs. The report and the history print these verdicts; nothing else checks them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench import targets
from bench.targets import FAIL, PASS, UNMEASURED

F0 = 100.0
GRANIAN_ARGV = ["python", "-m", "granian", "--interface", "wsgi", "blog.wsgi:app"]


def _stats(p50: float) -> dict[str, float]:
    return {"p50": p50}


def _hop(inprocess: float, http: float, f0: float | None = F0) -> dict[str, Any]:
    hop = {"inprocess": _stats(inprocess), "http": _stats(http)}
    if f0 is not None:
        hop["f0"] = _stats(f0)
    return hop


def _throughput(mono_cpu: float, far_cpu: float) -> dict[str, Any]:
    return {
        "monolith": {"rps": 2000.0, "cpu_us_per_request": mono_cpu},
        "all-http": {"rps": 900.0, "cpu_us_per_request": far_cpu},
    }


def _ladder() -> dict[str, Any]:
    servers, kinds = ("granian", "waitress"), ("wsgi", "flask", "falcon", "service")
    rungs = {"socket": _stats(F0)}
    rungs |= {f"{s}.{k}": _stats(200.0 + i) for i, s in enumerate(servers) for k in kinds}
    rungs |= {r: _stats(300.0) for r in ("transport", "client.get_post", "stdlib.get_post")}
    return {
        "rungs": rungs,
        "servers": list(servers),
        "frameworks": ["flask", "falcon"],
        "placement": {"socket": "1"},
    }


@pytest.fixture
def run() -> dict[str, Any]:
    """A run in which every target passes, each with some room."""
    return {
        "machine": {"server_cpus": "1"},
        "ladder": _ladder(),
        "floors": {
            "probe": {"direct": _stats(0.05), "timed": _stats(0.30)},
            "hops": {
                "auth.get_user": _hop(100.0, 300.0),
                "posts.get_post_with_comments": _hop(150.0, 400.0),
                "auth.verify": _hop(60.0, 290.0),
            },
        },
        "head_to_head": {
            "page": {
                "monolith": _stats(600.0),
                "all-http": _stats(1000.0),
                "server_timing": {
                    "all-http": {
                        "domains": {
                            "posts": {"calls": ["posts.get_post_with_comments"]},
                            "auth": {"calls": ["auth.get_user"]},
                        }
                    }
                },
            },
            "throughput": {
                "post_page": _throughput(500.0, 900.0),
                "post_list": _throughput(550.0, 800.0),
            },
            "idle": {"seconds": 10.0, "ms_per_s": {"all-http": 3.0, "monolith": 0.7}},
            "lean": {
                "monolith": {"rps": 1600.0, "cpu_us_per_request": 600.0},
                "lean": {"rps": 1700.0, "cpu_us_per_request": 550.0},
            },
            "server": {
                "name": "granian",
                "monolith_workers": 2,
                "threads": 8,
                "monolith_argv": GRANIAN_ARGV,
            },
        },
    }


def verdicts(results: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["verdict"] for t in targets.evaluate(results)}


def judged(results: dict[str, Any], key: str) -> dict[str, Any]:
    return next(t for t in targets.evaluate(results) if t["key"] == key)


def test_every_target_passes_on_a_good_run_in_the_issues_order(run: dict[str, Any]) -> None:
    assert verdicts(run) == {key: PASS for key in "01234567"}
    assert [t["key"] for t in targets.evaluate(run)] == list("01234567")


def test_a_run_that_skipped_everything_measures_nothing() -> None:
    judged_targets = targets.evaluate({"machine": {"server_cpus": "1"}})
    assert {t["verdict"] for t in judged_targets} == {UNMEASURED}
    assert all(t["measured"] == "–" for t in judged_targets)


def test_the_interface_target_is_the_timed_calls_excess(run: dict[str, Any]) -> None:
    run["floors"]["probe"]["timed"] = _stats(1.06)  # 1.01 µs over the direct call
    target = judged(run, "0")
    assert target["verdict"] == FAIL
    assert target["values"]["added_us"] == pytest.approx(1.01)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda ladder: ladder["rungs"].pop("transport"),
        lambda ladder: ladder["rungs"].pop("waitress.falcon"),
        lambda ladder: ladder["rungs"].__setitem__("granian.wsgi", _stats(F0 - 1)),
        lambda ladder: ladder["placement"].__setitem__("socket", "0"),
    ],
    ids=["a client rung missing", "a server rung missing", "a rung below F0", "F0 elsewhere"],
)
def test_the_floor_needs_every_rung_above_f0_on_the_server_cpus(
    run: dict[str, Any], spoil: Any
) -> None:
    spoil(run["ladder"])
    assert judged(run, "1")["verdict"] == FAIL


def test_a_hop_at_exactly_three_f0_passes_and_one_over_fails(run: dict[str, Any]) -> None:
    run["floors"]["hops"]["auth.verify"] = _hop(60.0, 60.0 + 3 * F0)
    assert judged(run, "2")["verdict"] == PASS
    run["floors"]["hops"]["auth.verify"] = _hop(60.0, 61.0 + 3 * F0)
    target = judged(run, "2")
    assert target["verdict"] == FAIL
    assert target["values"]["worst"] == "auth.verify"
    assert "2/3 calls within" in target["measured"]


def test_a_hop_is_judged_against_the_f0_measured_beside_it(run: dict[str, Any]) -> None:
    # 250 µs added: 2.5 × the ladder's F0 (100 µs), but 3.1 × the F0 interleaved with it.
    run["floors"]["hops"]["auth.get_user"] = _hop(100.0, 350.0, f0=80.0)
    assert judged(run, "2")["verdict"] == FAIL
    run["floors"]["hops"]["auth.get_user"] = _hop(100.0, 350.0, f0=None)
    assert judged(run, "2")["verdict"] == PASS


def test_the_page_may_pay_two_of_its_own_hops(run: dict[str, Any]) -> None:
    # The page's calls added 200 and 250 µs in part 1: one hop is their median, 225 µs.
    limit = 600.0 + 2 * 225.0
    run["head_to_head"]["page"]["all-http"] = _stats(limit)
    target = judged(run, "3")
    assert target["verdict"] == PASS
    assert target["values"]["limit_us"] == pytest.approx(limit)
    assert target["values"]["hops_paid"] == pytest.approx(2.0)
    assert "(hop: posts.get_post_with_comments, auth.get_user)" in target["limit"]
    run["head_to_head"]["page"]["all-http"] = _stats(limit + 1)
    assert judged(run, "3")["verdict"] == FAIL


def test_a_page_whose_calls_were_not_measured_takes_every_hop(run: dict[str, Any]) -> None:
    domains = run["head_to_head"]["page"]["server_timing"]["all-http"]["domains"]
    domains["auth"]["calls"] = ["auth.something_new"]
    domains["posts"]["calls"] = []
    target = judged(run, "3")
    assert target["values"]["hop_us"] == pytest.approx(230.0)  # the median of 200, 250, 230


@pytest.mark.parametrize("what", ["post_page", "post_list"])
def test_throughput_per_cpu_fails_when_either_endpoint_costs_over_twice(
    run: dict[str, Any], what: str
) -> None:
    run["head_to_head"]["throughput"][what] = _throughput(500.0, 1000.0)
    assert judged(run, "4")["verdict"] == PASS
    run["head_to_head"]["throughput"][what] = _throughput(500.0, 1001.0)
    target = judged(run, "4")
    assert target["verdict"] == FAIL
    assert target["values"][what]["cpu_ratio"] == pytest.approx(2.002)


def test_the_idle_limit_is_all_extracted_not_the_monolith(run: dict[str, Any]) -> None:
    run["head_to_head"]["idle"]["ms_per_s"] = {"all-http": 5.0, "monolith": 9.0}
    assert judged(run, "5")["verdict"] == PASS
    run["head_to_head"]["idle"]["ms_per_s"]["all-http"] = 5.1
    assert judged(run, "5")["verdict"] == FAIL


@pytest.mark.parametrize(
    ("gateway_cpu", "shown", "verdict"),
    [(500.0, "-9 %", PASS), (687.5, "+25 %", PASS), (700.0, "+27 %", FAIL)],
)
def test_the_lean_baseline_signs_its_overhead(
    run: dict[str, Any], gateway_cpu: float, shown: str, verdict: str
) -> None:
    run["head_to_head"]["lean"]["monolith"]["cpu_us_per_request"] = gateway_cpu
    target = judged(run, "6")
    assert target["verdict"] == verdict
    assert target["measured"].startswith(f"{shown} CPU/request")


def test_the_monolith_must_run_under_a_production_server(run: dict[str, Any]) -> None:
    dev = copy.deepcopy(run)
    dev["head_to_head"]["server"]["monolith_argv"] = ["flask", "--app", "blog", "run"]
    assert judged(dev, "7")["verdict"] == FAIL
    one = copy.deepcopy(run)
    one["head_to_head"]["server"] |= {"monolith_workers": 1, "threads": 1}
    assert "granian, 1 worker × 1 thread," in judged(one, "7")["measured"]
