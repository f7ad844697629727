"""What the trim tests check on every output: it decodes cleanly with PyAV and with the
ffmpeg command line, it lasts as long as asked, and its fade is there."""

from __future__ import annotations

import math
import subprocess
from array import array
from pathlib import Path

import av
import pytest


def ffmpeg() -> str:
    """The ffmpeg binary of imageio-ffmpeg (the ``tests`` dependency group), or skip."""
    imageio_ffmpeg = pytest.importorskip(
        "imageio_ffmpeg", reason="the ffmpeg command line comes from imageio-ffmpeg"
    )
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run_ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly, failing the test with its message if it fails."""
    command = [ffmpeg(), "-v", "error", "-y", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def assert_decodes_cleanly(path: Path, *extra: str) -> None:
    """``ffmpeg -v error -i path -f null -`` prints nothing, and PyAV decodes every frame."""
    command = [ffmpeg(), "-v", "error", *extra, "-i", str(path), "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    decode(path)


def decode(path: Path) -> tuple[array[float], int, int]:
    """All samples of *path* as interleaved float32, the channel count and the rate."""
    samples: array[float] = array("f")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                samples.frombytes(bytes(out.planes[0])[: out.samples * channels * 4])
        return samples, channels, stream.codec_context.sample_rate


def rms(samples: array[float], channels: int, start: int, end: int) -> float:
    """Root mean square of sample frames *start* to *end*."""
    window = samples[max(0, start) * channels : end * channels]
    return math.sqrt(sum(value * value for value in window) / max(1, len(window)))


def decibels(value: float, reference: float) -> float:
    """*value* relative to *reference* in dB (-inf for silence)."""
    return 20 * math.log10(value / reference) if value else -math.inf


def assert_faded(path: Path, limit: int, fade: int) -> None:
    """The last 20 ms are 10 dB and the last 5 ms 20 dB below the 200 ms before the fade."""
    samples, channels, rate = decode(path)
    end = len(samples) // channels
    assert end == limit
    before = rms(samples, channels, limit - fade - rate // 5, limit - fade)
    assert decibels(rms(samples, channels, limit - rate // 50, limit), before) <= -10
    assert decibels(rms(samples, channels, limit - rate // 200, limit), before) <= -20
