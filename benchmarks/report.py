"""Write the benchmark sections, with the machine they ran on, to ``docs/benchmarks.md``."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from measure import Section


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
        lines += ["", f"## {section.title}", "", section.method, "", section.table]
        if section.notes:
            lines += ["", *(f"- {note}" for note in section.notes)]
    return "\n".join(lines) + "\n"


def write(path: Path, sections: Sequence[Section], *, elapsed: float) -> None:
    """Write the page to *path*."""
    command = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
    path.write_text(render(sections, command=command, elapsed=elapsed), encoding="utf-8")
