"""Reading the gateway's ``Server-Timing`` header: where each request's time went, per domain."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple


class TimingEntry(NamedTuple):
    label: str
    desc: str
    ms: float
    service_ms: float | None
    """An extracted call's time inside the service's app (its ``service`` parameter)."""


def parse_server_timing(header: str) -> list[TimingEntry]:
    """``auth.verify;dur=0.42;desc="http";service=0.1, total;dur=1.1`` → entries."""
    entries = []
    for entry in header.split(","):
        label, *params = (p.strip() for p in entry.split(";"))
        values = dict(p.partition("=")[::2] for p in params)
        service = values.get("service")
        entries.append(
            TimingEntry(
                label,
                values.get("desc", "").strip('"'),
                float(values.get("dur", 0)),
                None if service is None else float(service),
            )
        )
    return entries


def summarize_server_timing(headers: Sequence[str]) -> dict[str, Any]:
    """Per domain: the median over requests of the summed ``dur`` of that domain's calls (and,
    extracted, of their time inside the service), the calls per request and the mode; plus the
    median ``total`` (the gateway's whole request)."""
    per_domain: dict[str, list[float]] = {}
    in_service: dict[str, list[float]] = {}
    calls: dict[str, set[str]] = {}
    modes: dict[str, str] = {}
    totals: list[float] = []
    counts: dict[str, list[int]] = {}
    for header in headers:
        request_sums: dict[str, float] = {}
        service_sums: dict[str, float | None] = {}
        request_counts: dict[str, int] = {}
        for label, desc, ms, service_ms in parse_server_timing(header):
            if label == "total":
                totals.append(ms)
                continue
            domain = label.partition(".")[0]
            request_sums[domain] = request_sums.get(domain, 0.0) + ms
            known = service_sums.get(domain, 0.0)
            service_sums[domain] = (
                None if known is None or service_ms is None else known + service_ms
            )
            request_counts[domain] = request_counts.get(domain, 0) + 1
            calls.setdefault(domain, set()).add(label)
            modes[domain] = desc
        for domain, total in request_sums.items():
            per_domain.setdefault(domain, []).append(total)
            counts.setdefault(domain, []).append(request_counts[domain])
            service_total = service_sums.get(domain)
            if service_total is not None:
                in_service.setdefault(domain, []).append(service_total)
    domains = {
        domain: {
            "median_ms": statistics.median(values),
            "service_median_ms": (
                statistics.median(in_service[domain])
                if len(in_service.get(domain, ())) == len(values)
                else None
            ),
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
