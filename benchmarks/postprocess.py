"""Scenario 3: post-processing with PyAV: seconds to trim a file, speed against real time, and
peak Python heap against file size for long WAVs."""

from __future__ import annotations

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
        "Post-processing: peak Python heap",
        "Peak of `tracemalloc` while `trim` re-encodes nearly all of a long WAV (cut 1 s before "
        "its end, so every frame is decoded, faded and encoded).",
        markdown_table(
            ["Trim", "File size", "Peak heap", "Heap / file"],
            [_peak_heap(folder, seconds) for seconds in lengths],
        ),
        ("tracemalloc sees the Python heap only, not FFmpeg's own buffers.",),
    )
    return speed, memory
