"""The HTTP intake scenario's report: medians and ranges over rounds, each adapter's throughput
as a ratio of the bare endpoint's in the same rounds, and each figure against its target."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence

import attrs
from loadgen import Run
from measure import Section, duration, markdown_table

FRAMEWORK_NAMES = {"fastapi": "FastAPI on uvicorn", "flask": "Flask on gunicorn"}
ADAPTER_NAMES = {"fastapi": "FastAPI", "flask": "Flask"}
STORE_NAMES = {"sqlite": "`SQLiteStore`", "postgres": "`SQLAlchemyStore` on PostgreSQL"}
#: What issue 8 holds each store to: (least throughput vs bare, most p99 latency in seconds).
TARGETS = {"sqlite": (0.4, 0.050), "postgres": (0.15, 0.100)}


@attrs.frozen
class Outcome:
    """One server's rounds, and the bare endpoint's rounds of the same run to compare with."""

    framework: str
    name: str
    store: str | None
    runs: Sequence[Run]
    bare: Sequence[Run]
    #: The bare endpoint itself (the 1x the others are compared with).
    is_bare: bool = False

    @property
    def ratios(self) -> list[float]:
        """Each round's requests/s over the bare endpoint's in the same round."""
        return [run.rate / bare.rate for run, bare in zip(self.runs, self.bare, strict=True)]

    @property
    def failures(self) -> Counter[str]:
        """Failed requests by kind: non-2xx statuses and socket errors (timeouts included)."""
        counts: Counter[str] = Counter()
        for run in self.runs:
            for status, count in run.statuses.items():
                if not 200 <= status < 300:
                    counts[str(status)] += count
            counts["socket errors"] += run.socket_errors
        return +counts

    @property
    def label(self) -> str:
        """``FastAPI + `SQLiteStore``` or ``bare Starlette``."""
        if self.store is None:
            return self.name
        return f"{ADAPTER_NAMES[self.framework]} + {STORE_NAMES[self.store]}"


def _spread(values: Sequence[float], show: str) -> str:
    """The median, and the range when there is more than one value."""
    text = _show(show, statistics.median(values))
    if len(values) > 1:
        text += f" ({_show(show, min(values))}\N{EN DASH}{_show(show, max(values))})"
    return text


def _show(kind: str, value: float) -> str:
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.3g}x"
    return duration(value)


def _failed(outcome: Outcome) -> str:
    failures = outcome.failures
    if not failures:
        return "0"
    return ", ".join(f"{kind}: {count:,}" for kind, count in failures.most_common())


def _raw_row(outcome: Outcome) -> list[object]:
    runs = outcome.runs
    repeats = sum(run.repeats for run in runs) if outcome.store else "n/a"
    return [
        FRAMEWORK_NAMES[outcome.framework],
        outcome.label,
        f"{sum(run.requests for run in runs):,}",
        _spread([run.rate for run in runs], "rate"),
        "1x" if outcome.is_bare else _spread(outcome.ratios, "ratio"),
        _spread([run.p50 for run in runs], "time"),
        _spread([run.p99 for run in runs], "time"),
        duration(max(run.max for run in runs)),
        _failed(outcome),
        repeats,
    ]


def _verdict(held: bool) -> str:
    return "met" if held else "missed"


def _target_rows(outcome: Outcome, bare_name: str) -> list[list[object]]:
    assert outcome.store is not None
    least, most = TARGETS[outcome.store]
    ratio = statistics.median(outcome.ratios)
    p99 = statistics.median(run.p99 for run in outcome.runs)
    requests = sum(run.requests for run in outcome.runs)
    failed = sum(outcome.failures.values())
    return [
        [
            f"{outcome.label}: requests/s vs {bare_name}",
            _spread(outcome.ratios, "ratio"),
            f"≥ {least:g}x",
            _verdict(ratio >= least),
        ],
        [
            f"{outcome.label}: p99 latency",
            _spread([run.p99 for run in outcome.runs], "time"),
            f"≤ {duration(most)}",
            _verdict(p99 <= most),
        ],
        [
            f"{outcome.label}: failed requests",
            f"{failed:,} of {requests:,}",
            "0",
            _verdict(failed == 0),
        ],
    ]


def tables(outcomes: Sequence[Outcome]) -> str:
    """The measured figures, then each adapter's figures against their targets."""
    raw = markdown_table(
        [
            "Server",
            "Endpoint",
            "Requests",
            "Requests/s",
            "vs bare",
            "Latency p50",
            "Latency p99",
            "Latency max",
            "Failed",
            "Repeated",
        ],
        [_raw_row(outcome) for outcome in outcomes],
    )
    bare_names = {o.framework: o.name for o in outcomes if o.is_bare}
    held = markdown_table(
        ["Figure (median of rounds, range)", "Measured", "Target", "Result"],
        [
            row
            for outcome in outcomes
            if outcome.store is not None
            for row in _target_rows(outcome, bare_names[outcome.framework])
        ],
    )
    return f"{raw}\n\n{held}"


def section(
    outcomes: Sequence[Outcome], *, seconds: int, rounds: int, method: str, notes: list[str]
) -> Section:
    """The scenario's part of the report."""
    notes = list(notes)
    if any(sum(run.repeats for run in o.runs) for o in outcomes if o.store):
        notes.append(
            "Some deliveries were sent twice (Repeated): those requests were duplicates, "
            "answered without a state change, so the rounds they fall in flatter the adapter."
        )
    for framework_only in (o for o in outcomes if o.store is None and not o.is_bare):
        ratio = _show("ratio", statistics.median(framework_only.ratios))
        notes.append(
            f"The {framework_only.name} (the same route with nothing of the library) reaches "
            f"{ratio} of the bare endpoint in the same rounds: that much of each FastAPI ratio "
            f"above is FastAPI's own work before the library runs."
        )
    if seconds < 5 or rounds < 3:
        notes.append(
            f"A short run ({rounds} round{'' if rounds == 1 else 's'} of {seconds} s): it "
            f"checks the harness; its figures are too noisy to hold to the targets."
        )
    table = tables(outcomes) if outcomes else "Nothing was measured."
    return Section("Webhook intake over HTTP under load", method, table, tuple(notes))
