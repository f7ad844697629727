"""Run every benchmark side by side and write the tables to ``docs/benchmarks.md``.

python benchmarks/run.py            # the full run, about five minutes on 2 cores
python benchmarks/run.py --quick    # fewer repeats, for a look

The HTTP intake scenario needs wrk, uvicorn and gunicorn: `bash benchmarks/setup.sh`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import intake
import intake_http
import latency
import postprocess
import report
from measure import Section


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the scenarios in turn, and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller files")
    parser.add_argument("--output", type=Path, default=report.DOCS, help=f"default: {report.DOCS}")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="replicate-audio-bench-") as folder:
        for name, scenario in (
            ("latency", latency),
            ("intake", intake),
            ("intake over HTTP", intake_http),
            ("post-processing", postprocess),
        ):
            print(f"{name}...", file=sys.stderr, flush=True)
            work = Path(folder, name)
            work.mkdir()
            result = scenario.run(quick=options.quick, folder=work)
            sections += result if isinstance(result, tuple) else [result]
    elapsed = time.perf_counter() - start
    report.write(options.output, sections, elapsed=elapsed)
    print(f"wrote {options.output} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
