"""What every scenario shares: bounded repetition, medians and p95, and Markdown tables."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

import attrs


@attrs.frozen
class Summary:
    """The median and 95th percentile of some samples (seconds, unless said otherwise)."""

    count: int
    median: float
    p95: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Summary:
        """Summarise *samples*; the p95 is the nearest-rank percentile."""
        if not samples:
            raise ValueError("no samples to summarise")
        ordered = sorted(samples)
        rank = max(0, math.ceil(0.95 * len(ordered)) - 1)
        return cls(len(ordered), statistics.median(ordered), ordered[rank])


@attrs.frozen
class Section:
    """One scenario's part of the report: a heading, a sentence of method, a table, notes."""

    title: str
    method: str
    table: str
    notes: tuple[str, ...] = ()


def repeat(
    action: Callable[[], object], *, count: int, budget: float, minimum: int = 3
) -> list[float]:
    """Time *action* up to *count* times, stopping early once *budget* seconds have passed
    (but never before *minimum* runs)."""
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < count and (len(samples) < minimum or time.perf_counter() < deadline):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def duration(seconds: float) -> str:
    """A duration with a unit that keeps three significant digits: µs, ms or s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def size(count: float) -> str:
    """A byte count in KiB or MiB."""
    if count < 1024 * 1024:
        return f"{count / 1024:.3g} KiB"
    return f"{count / (1024 * 1024):.3g} MiB"


def ratio(value: float, reference: float) -> str:
    """``value / reference`` as ``1.00x``-style text."""
    return f"{value / reference:.3g}x" if reference else "n/a"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; the first column is left-aligned, the rest right."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)
