"""The soak: everything extracted on RabbitMQ under a moderate mixed load, for a bounded time.

    make soak                                    # 10 minutes
    SOAK_SECONDS=1800 make soak                  # longer
    .venv/bin/python bench/soak.py --seconds 60 --rate 20 --report reports/soak.md

Registers, logs in, posts, comments, pays (retrying one payment in five with its key), uploads,
renames and reads through the monolith's public API, while it samples every process tree's memory
(PSS), open file descriptors and sockets, each outbox's backlog and size, and each queue's depth.
It passes when nothing grows without bound (how that is judged: ``lab/soak.py``) and, once the
load stops and the events settle, every request's side effect (post, comment, payment, upload,
email) is there exactly once. Prints a report (and writes it with ``--report``); exits 1 on a
failure. Needs RabbitMQ (``events.rabbitmq_url`` of the config file); Redis is used for the rate
limits if it runs (the limits are set out of reach).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from blog.config import Config  # noqa: E402
from lab.configs import base_config  # noqa: E402
from lab.soak import (  # noqa: E402
    Ledger,
    Sample,
    Sampler,
    SoakBroker,
    SoakSettings,
    Verdict,
    deploy,
    drive,
    judge_all,
    settle,
)

SECONDS_ENV = "SOAK_SECONDS"
DEFAULT_SECONDS = 600.0
MIN_JUDGED_SECONDS = 120.0
"""Shorter runs are smoke tests: within half a minute the connection pools are still filling
(a step up in sockets late in the run), which the growth rule cannot tell from a leak; their
growth is reported, not judged. Side effects are checked whatever the length."""
TIMELINE_ROWS = 12


@dataclass
class SoakResult:
    settings: SoakSettings
    samples: list[Sample]
    verdicts: list[Verdict]
    problems: list[str]
    ledger: Ledger
    elapsed: float
    sampler_errors: dict[str, int] = field(default_factory=dict)

    @property
    def judged(self) -> bool:
        return self.elapsed >= MIN_JUDGED_SECONDS

    @property
    def grew(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.passed]

    @property
    def passed(self) -> bool:
        grew = self.grew if self.judged else []
        return not grew and not self.problems and not self.ledger.failures


def run_soak(
    settings: SoakSettings,
    base: Config | None = None,
    state: Path | None = None,
    log: bool = True,
) -> SoakResult:
    """Deploy, load for ``settings.seconds`` while sampling, let the events settle, judge."""
    base = base or base_config()
    say = print if log else (lambda _line: None)
    owned = state is None
    state = state or Path(tempfile.mkdtemp(prefix="soak-"))
    broker = SoakBroker(base.events.rabbitmq_url)
    try:
        with ExitStack() as stack:
            stack.callback(broker.delete)
            deployment = deploy(base, state, broker, settings, stack, output=say)
            ledger = Ledger()
            sampler = Sampler(deployment, broker, settings.interval)
            started = time.monotonic()
            sampler.start(started)
            stack.callback(sampler.stop)
            say(
                f"soak: {settings.seconds:.0f} s at {settings.rate:g} requests/s "
                f"({settings.clients} clients), sampling every {settings.interval:g} s"
            )
            port = deployment.monolith.port
            drive(port, ledger, settings, started + settings.seconds, threading.Event())
            elapsed = time.monotonic() - started
            say(f"soak: load done after {elapsed:.0f} s; letting the events settle")
            problems = settle(deployment, ledger, sampler, broker)
            sampler.stop()
            samples = [s for s in sampler.samples if s.at <= elapsed]
            return SoakResult(
                settings,
                samples,
                judge_all(samples),
                problems,
                ledger,
                elapsed,
                dict(sampler.errors),
            )
    finally:
        if owned:
            shutil.rmtree(state, ignore_errors=True)


# --------------------------------------------------------------------------- the report


def _size(series: str, value: float) -> str:
    if series.startswith("memory_kb"):
        return f"{value / 1024:.1f} MiB"
    return f"{value:.0f}"


def _rate(series: str, per_minute: float) -> str:
    if series.startswith("memory_kb"):
        return f"{per_minute / 1024:+.2f} MiB/min"
    return f"{per_minute:+.2f}/min"


def report(result: SoakResult) -> str:
    settings, ledger = result.settings, result.ledger
    lines = [
        "# Soak: everything extracted on RabbitMQ",
        "",
        f"{result.elapsed:.0f} s of load at {settings.rate:g} requests/s ({settings.clients} "
        f"clients), {sum(ledger.requests.values())} requests; samples every "
        f"{settings.interval:g} s; outbox retention {settings.retention:g} s.",
        "",
        "Requests: " + ", ".join(f"{op} {n}" for op, n in sorted(ledger.requests.items())),
        "",
        f"Side effects checked: {len(ledger.members)} accounts, {len(ledger.posts)} posts, "
        f"{sum(ledger.comments.values())} comments, {len(ledger.payments)} payments, "
        f"{len(ledger.uploads)} uploads, and one email for each account, post and payment.",
        "",
        "## Memory per process over time (PSS of each process and its workers, MiB)",
        "",
    ]
    processes = sorted(
        {
            name.split(" ", 1)[1]
            for s in result.samples
            for name in s.values
            if name.startswith("memory_kb")
        }
    )
    lines.append("| t (s) | " + " | ".join(processes) + " |")
    lines.append("| ---: |" + " ---: |" * len(processes))
    step = max(len(result.samples) // TIMELINE_ROWS, 1)
    shown = result.samples[::step]
    if result.samples and shown[-1] is not result.samples[-1]:
        shown.append(result.samples[-1])
    for sample in shown:
        cells = [f"{sample.values.get(f'memory_kb {p}', 0) / 1024:.1f}" for p in processes]
        lines.append(f"| {sample.at:.0f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Does anything grow?",
        "",
        "First → peak → last sample; the mean of each third after the warm-up (the first tenth); "
        "the least-squares slope of the first and last thirds; the late growth (last third's mean "
        "minus the middle's) carried over the run, against the tolerance (`lab/soak.py`).",
        "",
        "| series | first | peak | last | thirds' means | slope, first third | slope, last third "
        "| late growth × 3 | tolerance | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for v in result.verdicts:
        thirds = " / ".join(_size(v.series, m) for m in v.thirds)
        lines.append(
            f"| {v.series} | {_size(v.series, v.first)} | {_size(v.series, v.peak)} | "
            f"{_size(v.series, v.last)} | {thirds} | {_rate(v.series, v.first_slope)} | "
            f"{_rate(v.series, v.last_slope)} | {_size(v.series, v.projected)} | "
            f"{_size(v.series, v.tolerance)} | {'ok' if v.passed else 'GROWS'} |"
        )
    lines += ["", "## Verdict", ""]
    if not result.judged:
        lines.append(
            f"Growth not judged: a run shorter than {MIN_JUDGED_SECONDS:.0f} s is a smoke test."
        )
    if result.grew:
        lines.append("Grows: " + ", ".join(v.series for v in result.grew))
    if ledger.failures:
        lines.append(
            "Failed requests: "
            + ", ".join(f"{what} ×{n}" for what, n in sorted(ledger.failures.items()))
        )
    lines += [f"- {problem}" for problem in result.problems[:50]]
    if result.sampler_errors:
        lines.append(f"(samples missed: {result.sampler_errors})")
    lines.append("PASS" if result.passed else "FAIL")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_seconds = float(os.environ.get(SECONDS_ENV) or DEFAULT_SECONDS)
    parser.add_argument("--seconds", type=float, default=default_seconds)
    parser.add_argument("--rate", type=float, default=SoakSettings.rate)
    parser.add_argument("--clients", type=int, default=SoakSettings.clients)
    parser.add_argument("--report", type=Path, help="also write the report here")
    parser.add_argument("--keep", type=Path, help="keep the state (databases, logs) here")
    parser.add_argument("--samples", type=Path, help="write every sample here (JSON)")
    args = parser.parse_args(argv)
    settings = SoakSettings(seconds=args.seconds, rate=args.rate, clients=args.clients)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    result = run_soak(settings, state=args.keep)
    text = report(result)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
    if args.samples:
        samples = [{"at": s.at, **s.values} for s in result.samples]
        args.samples.write_text(json.dumps(samples), encoding="utf-8")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
