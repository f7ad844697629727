"""Write the benchmark sections, with the machine they ran on, to ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from measure import Section

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> list[str]:
    """What the numbers depend on: cores, CPU, OS and Python."""
    return [
        f"- CPUs: {os.cpu_count()} ({platform.processor() or platform.machine()})",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
    ]


def render(sections: Sequence[Section], *, command: str, elapsed: float) -> str:
    """The whole page."""
    lines = [
        "# Benchmarks",
        "",
        "Speed is measured here, not asserted in tests. Every number below comes from one run "
        "of the command, so the rows of a table are comparable with each other; numbers from "
        "another machine or another run are not.",
        "",
        f"Command: `{command}` (took {elapsed:.0f} s). Everything runs on 127.0.0.1.",
        "",
        *machine(),
    ]
    for section in sections:
        lines += ["", *section_lines(section)]
    return "\n".join(lines) + "\n"


def section_lines(section: Section) -> list[str]:
    """One section of the page: its heading, method, table and notes."""
    lines = [f"## {section.title}", "", section.method, "", section.table]
    if section.notes:
        lines += ["", *(f"- {note}" for note in section.notes)]
    return lines


def write(path: Path, sections: Sequence[Section], *, elapsed: float) -> None:
    """Write the page to *path*."""
    command = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
    path.write_text(render(sections, command=command, elapsed=elapsed), encoding="utf-8")


def replace_section(
    path: Path, section: Section, *, script: str, elapsed: float, after: str | None = None
) -> None:
    """Put *section*, measured by *script* on its own, in place of the section of the same
    title in the page at *path* (if it has none: after the section titled *after*, or last),
    leaving the other sections as they are; the section says it was measured apart from them."""
    command = " ".join(["python", script, *sys.argv[1:]])
    when = f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    alone = (
        f"Measured on its own by `{command}` on {when} (took {elapsed:.0f} s), not in the run "
        f"that made the rest of this page."
    )
    section = Section(section.title, section.method, section.table, (*section.notes, alone))
    if not path.exists():
        path.write_text(render([section], command=command, elapsed=elapsed), encoding="utf-8")
        return
    lines = path.read_text(encoding="utf-8").rstrip("\n").split("\n")
    if f"## {section.title}" in lines:
        start = lines.index(f"## {section.title}")
        end = _section_end(lines, start)
    elif after is not None and f"## {after}" in lines:
        start = end = _section_end(lines, lines.index(f"## {after}"))
    else:
        start = end = len(lines)
    before = lines[:start]
    rest = ["", *lines[end:]] if end < len(lines) else []
    if before and before[-1] != "":
        before.append("")
    page = [*before, *section_lines(section), *rest]
    path.write_text("\n".join(page) + "\n", encoding="utf-8")


def _section_end(lines: list[str], start: int) -> int:
    """The index of the heading after the section that starts at *start* (or the end)."""
    following = (n for n in range(start + 1, len(lines)) if lines[n].startswith("## "))
    return next(following, len(lines))
