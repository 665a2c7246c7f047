"""Markdown tables: the one way every section of the report lays out its rows."""

from __future__ import annotations

from typing import Any


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    """``align``: one letter per column, ``l`` or ``r`` (default: the first left, the rest
    right)."""
    align = align or ("l" + "r" * (len(header) - 1))
    rule = ["---:" if a == "r" else "---" for a in align]
    return [row(header), row(rule), *(row(r) for r in rows)]


def others(run: dict[str, Any]) -> str:
    """The CPU other work used while a part ran (⚠ above a quarter of a CPU: distrust it)."""
    cpus = run.get("others_cpu")
    return "?" if cpus is None else f"{cpus:.2f} CPU" + (" ⚠" if cpus > 0.25 else "")
