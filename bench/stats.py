"""Summaries (median, p95, ...) and the Markdown tables every benchmark prints.

Pure functions, no I/O: tests/unit/test_bench_smoke.py checks them without starting anything.
Percentiles interpolate linearly between order statistics (numpy's default, "type 7"), so the
p95 of 10 samples lies between the 9th and the 10th value rather than being the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``; NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """What a table cell needs from a set of samples. ``missing`` counts samples that never came
    (a contender that did not recover within the cycle's deadline, say)."""

    n: int
    median: float
    p95: float
    p99: float
    low: float
    high: float
    missing: int = 0

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Summary:
        present = [float(v) for v in values if v is not None and not math.isnan(v)]
        missing = len(values) - len(present)
        if not present:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, missing)
        return cls(
            n=len(present),
            median=percentile(present, 50),
            p95=percentile(present, 95),
            p99=percentile(present, 99),
            low=min(present),
            high=max(present),
            missing=missing,
        )


def fmt_seconds(value: float) -> str:
    """Seconds for people: '0.43 s', '12.1 s', '3.2 ms' below 0.1 s; '-' for NaN."""
    if math.isnan(value):
        return "-"
    if abs(value) < 0.1:
        return f"{value * 1000:.1f} ms"
    if abs(value) < 10:
        return f"{value:.2f} s"
    return f"{value:.1f} s"


def fmt_ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:.2f} ms"


def fmt_ratio(value: float) -> str:
    return "-" if math.isnan(value) or math.isinf(value) else f"{value:.2f}x"


def ratio(numerator: float, denominator: float) -> float:
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def verdict(ok: bool | None) -> str:
    """The target column: met, missed, or not measurable (None)."""
    return "n/a" if ok is None else ("met" if ok else "**missed**")


@dataclass
class Table:
    """A titled Markdown pipe table with optional notes printed under it."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.headers):
            raise ValueError(f"{self.title}: row has {len(cells)} cells, table has {len(self.headers)} columns")
        self.rows.append([str(cell) for cell in cells])

    def render(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(row) for row in self.rows]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        return "\n".join(out) + "\n"
