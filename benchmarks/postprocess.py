"""Scenario 3: post-processing with PyAV: seconds to trim a file, speed against real time, and
peak Python heap and process memory against file size for long WAVs."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

from measure import Section, Summary, duration, markdown_table, repeat, size

from replicate_audio.audio import synthesize, trim

SOURCE_SECONDS = 30.0
KEEP_SECONDS = 5.0


def _trim_speed(folder: Path, format: str, count: int) -> list[object]:
    source = folder / f"source.{format}"
    info = synthesize(source, duration=SOURCE_SECONDS, format=format)
    samples = repeat(
        lambda: trim(source, folder / f"kept.{format}", duration=KEEP_SECONDS),
        count=count,
        budget=10,
    )
    taken = Summary.of(samples)
    return [
        f"{format}, {SOURCE_SECONDS:g} s → {KEEP_SECONDS:g} s",
        size(info.size),
        taken.count,
        duration(taken.median),
        duration(taken.p95),
        f"{KEEP_SECONDS / taken.median:.0f}x",
    ]


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
    """Time trims of short files, then trace the heap while trimming long ones."""
    count = 5 if quick else 15
    speed_rows = [_trim_speed(folder, format, count) for format in ("mp3", "wav")]
    speed = Section(
        "Post-processing: trim",
        f"`replicate_audio.audio.trim` keeps the first {KEEP_SECONDS:g} s of a "
        f"{SOURCE_SECONDS:g} s stereo 44.1 kHz file made by `synthesize`, with the default "
        f"50 ms fade-out, {count} times (at most 10 s of repeats).",
        markdown_table(
            ["Trim", "Source size", "Runs", "Time p50", "Time p95", "x real time"], speed_rows
        ),
        (
            f"x real time: seconds of audio written ({KEEP_SECONDS:g}) per second taken. Decoding "
            f"stops at the cut, so the rest of the source is never read.",
        ),
    )
    lengths = (30.0, 120.0) if quick else (60.0, 240.0)
    memory = Section(
        "Post-processing: peak memory",
        "Peak of `tracemalloc` while `trim` re-encodes nearly all of a long WAV (cut 1 s before "
        "its end, so every frame is decoded, faded and encoded).",
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
