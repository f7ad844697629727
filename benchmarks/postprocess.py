"""Scenario 3: post-processing: seconds to trim a file (the fast paths, against the ffmpeg
command line doing the same cut and fade), and peak Python heap and process memory against
file size for long WAVs.

python benchmarks/postprocess.py            # print the sections
python benchmarks/postprocess.py --write    # and put them in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import report
from measure import Section, duration, markdown_table, size

from replicate_audio.audio import synthesize, trim

SOURCE_SECONDS = 30.0
KEEP_SECONDS = 5.0


FADE_SECONDS = 0.05
DASH = "\N{EN DASH}"
#: The fast paths should beat the ffmpeg command line (start-up included) by this much.
TARGET = 10.0


def _ffmpeg() -> str:
    import imageio_ffmpeg  # the tests dependency group has it

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _time(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def _spread(samples: list[float]) -> str:
    low, high = duration(min(samples)), duration(max(samples))
    return f"{duration(statistics.median(samples))} ({low}{DASH}{high})"


def _trim_speed(folder: Path, format: str, count: int) -> tuple[list[object], list[object]]:
    source = folder / f"source.{format}"
    info = synthesize(source, duration=SOURCE_SECONDS, format=format)
    start = KEEP_SECONDS - FADE_SECONDS
    command = [_ffmpeg(), "-v", "error", "-y", "-i", str(source), "-t", f"{KEEP_SECONDS:g}"]
    command += [
        "-af",
        f"afade=t=out:st={start:g}:d={FADE_SECONDS:g}",
        str(folder / f"cli.{format}"),
    ]

    def ours() -> None:
        trim(source, folder / f"kept.{format}", duration=KEEP_SECONDS, fade_out=FADE_SECONDS)

    def cli() -> None:
        subprocess.run(command, check=True)

    ours(), cli()  # warm: page cache, imports
    fast: list[float] = []
    slow: list[float] = []
    for run in range(count):  # alternating, so drift in the machine's load hits both
        for action, samples in ((ours, fast), (cli, slow))[:: 1 if run % 2 else -1]:
            samples.append(_time(action))
    ratios = sorted(cli_time / our_time for our_time, cli_time in zip(fast, slow, strict=True))
    ratio = statistics.median(slow) / statistics.median(fast)
    label = f"{format}, {SOURCE_SECONDS:g} s → {KEEP_SECONDS:g} s"
    row = [label, size(info.size), count, _spread(fast), _spread(slow)]
    row.append(f"{ratio:.3g}x ({ratios[0]:.3g}x{DASH}{ratios[-1]:.3g}x)")
    verdict = [f"`trim` {format} vs the command line", f"{ratio:.3g}x", f"≥ {TARGET:g}x"]
    verdict.append("met" if ratio >= TARGET else "missed")
    return row, verdict


def _peak_heap(folder: Path, seconds: float) -> list[object]:
    source = folder / f"long-{seconds:g}.wav"
    info = synthesize(source, duration=seconds, format="wav")
    tracemalloc.start()
    try:
        trim(source, folder / "long-kept.wav", duration=seconds - 1)  # decodes the whole file
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    source.unlink()
    return [
        f"wav, {seconds:g} s → {seconds - 1:g} s",
        size(info.size),
        size(peak),
        f"{peak / info.size:.2%}",
    ]


# Run in a fresh process, so its peak resident memory is the trim's and nothing else's.
_RSS_PROBE = """
import json, sys
from replicate_audio.audio import trim

def kib(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # Linux: the peak resident set size starts again from the current one
before = kib("VmRSS")
trim(sys.argv[1], sys.argv[2], duration=float(sys.argv[3]))
print(json.dumps({"before": before * 1024, "after": kib("VmHWM") * 1024}))
"""


def _peak_rss(folder: Path, seconds: float) -> list[object]:
    source = folder / f"huge-{seconds:g}.wav"
    info = synthesize(source, duration=seconds, format="wav")
    keep = seconds - 1
    try:
        command = [sys.executable, "-c", _RSS_PROBE, str(source), str(folder / "huge-kept.wav")]
        output = subprocess.run([*command, str(keep)], capture_output=True, check=True, text=True)
    finally:
        source.unlink()
    rss = json.loads(output.stdout)
    growth = rss["after"] - rss["before"]
    return [
        f"wav, {seconds:g} s → {keep:g} s",
        size(info.size),
        size(rss["before"]),
        size(rss["after"]),
        size(growth),
        f"{growth / info.size:.2%}",
    ]


def run(*, quick: bool, folder: Path) -> tuple[Section, Section]:
    """Time trims of short files against the command line, then trace the heap while
    trimming long ones."""
    count = 6 if quick else 20
    measured = [_trim_speed(folder, format, count) for format in ("mp3", "wav")]
    speed = Section(
        "Post-processing: trim",
        f"`replicate_audio.audio.trim` keeps the first {KEEP_SECONDS:g} s of a "
        f"{SOURCE_SECONDS:g} s stereo 44.1 kHz file made by `synthesize` (mp3: libmp3lame "
        f"through PyAV, with its Info/LAME frame; wav: 16-bit PCM) with a "
        f"{FADE_SECONDS * 1000:g} ms fade-out, against `ffmpeg -i source -t {KEEP_SECONDS:g} "
        f"-af afade=t=out:st={KEEP_SECONDS - FADE_SECONDS:g}:d={FADE_SECONDS:g} out` (the "
        f"imageio-ffmpeg binary, run as a subprocess: its start-up is in its time), {count} "
        f"runs each, alternating which goes first.",
        markdown_table(
            [
                "Trim",
                "Source size",
                "Runs",
                "`trim` p50 (range)",
                "ffmpeg CLI p50 (range)",
                "Faster by (range of pairs)",
            ],
            [row for row, _ in measured],
        )
        + "\n\n"
        + markdown_table(["Figure", "Measured", "Target", "Result"], [v for _, v in measured]),
        (
            "Faster by: the command line's median over `trim`'s; the range is that of the "
            "ratio within each alternating pair.",
            "`trim` copies the kept frames (mp3) or samples (wav) and rewrites only the fade: "
            "mp3 lowers each granule's global_gain, wav scales the fade window's samples. "
            "The command line decodes, filters and re-encodes.",
        ),
    )
    lengths = (30.0, 120.0) if quick else (60.0, 240.0)
    memory = Section(
        "Post-processing: peak memory",
        "Peak of `tracemalloc` while `trim` cuts a long WAV 1 s before its end: the fast path "
        "copies nearly all of it (`copy_file_range`) and fades the last 50 ms.",
        markdown_table(
            ["Trim", "File size", "Peak heap", "Heap / file"],
            [_peak_heap(folder, seconds) for seconds in lengths],
        )
        + "\n\n"
        + markdown_table(
            [
                "Trim",
                "File size",
                "RSS before",
                "Peak RSS while trimming",
                "Growth",
                "Growth / file",
            ],
            [_peak_rss(folder, 300.0 if quick else 1200.0)],
        ),
        (
            "tracemalloc sees the Python heap only, not FFmpeg's own buffers. The second table "
            "is the whole process: a fresh one that imports `replicate_audio.audio`, resets "
            "its peak resident set size (`/proc/self/clear_refs`), trims, and reads the peak "
            "(`VmHWM`).",
        ),
    )
    return speed, memory


def main(argv: list[str] | None = None) -> int:
    """Run the scenario alone; print its sections, or write them into docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller files")
    parser.add_argument("--write", action="store_true", help="replace the sections in the docs")
    parser.add_argument("--output", type=Path, default=report.DOCS, help=f"{report.DOCS}")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replicate-audio-bench-") as folder:
        sections = run(quick=args.quick, folder=Path(folder))
    elapsed = time.perf_counter() - start
    for section in sections:
        if args.write:
            script = "benchmarks/postprocess.py"
            report.replace_section(args.output, section, script=script, elapsed=elapsed)
        else:
            print("\n".join(report.section_lines(section)), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
