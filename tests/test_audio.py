"""Tests for replicate_audio.audio: real audio, written, decoded and measured."""

from __future__ import annotations

import math
import resource
import time
import tracemalloc
from array import array
from pathlib import Path

import av
import pytest

from replicate_audio import audio
from replicate_audio.audio import SUPPORTED_FORMATS, probe, synthesize, trim
from replicate_audio.errors import AudioProcessingError
from replicate_audio.storage.protocols import AudioInfo

RATE = 44100
#: One codec frame, in samples: how far a decoded length may stray from the requested one.
FRAME = {"mp3": 1152, "wav": 0, "flac": 0, "ogg": 2048}


def decode(path: Path) -> tuple[array[float], int]:
    """All samples of *path* as interleaved float32, and the channel count (small files only)."""
    samples: array[float] = array("f")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                samples.frombytes(bytes(out.planes[0])[: out.samples * channels * 4])
    return samples, channels


def decoded_samples(path: Path) -> int:
    """How many samples per channel *path* decodes to."""
    with av.open(str(path)) as container:
        return sum(frame.samples for frame in container.decode(audio=0))


def rms(samples: array[float], channels: int, start: float, end: float) -> float:
    """Root mean square of the samples between *start* and *end* seconds."""
    window = samples[round(start * RATE) * channels : round(end * RATE) * channels]
    return math.sqrt(sum(value * value for value in window) / len(window))


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4 s stereo tone in every supported format."""
    folder = tmp_path_factory.mktemp("sources")
    paths = {fmt: folder / f"tone.{fmt}" for fmt in SUPPORTED_FORMATS}
    for fmt, path in paths.items():
        synthesize(path, duration=4.0, format=fmt)
    return paths


def test_audio_info_is_the_storage_value_type() -> None:
    """audio re-exports the AudioInfo that the storage protocols use."""
    assert audio.AudioInfo is AudioInfo
    assert "AudioInfo" in audio.__all__


def test_mp3_and_wav_are_supported() -> None:
    """mp3 and wav can always be written; flac and ogg too with the PyAV wheels."""
    assert {"mp3", "wav"} <= set(SUPPORTED_FORMATS)


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_synthesize_writes_real_audio_of_the_requested_length(fmt: str, tmp_path: Path) -> None:
    """synthesize writes decodable audio whose sample count matches the duration."""
    path = tmp_path / f"out.{fmt}"
    info = synthesize(path, duration=2.5, format=fmt)
    assert (info.format, info.size, info.sample_rate, info.channels) == (
        fmt,
        path.stat().st_size,
        RATE,
        2,
    )
    assert abs(info.duration - 2.5) <= (FRAME[fmt] + 1) / RATE
    assert abs(decoded_samples(path) - round(2.5 * RATE)) <= FRAME[fmt]
    exact = probe(path, exact=True)
    assert abs(exact.duration - 2.5) <= (FRAME[fmt] + 1) / RATE
    samples, _ = decode(path)
    assert rms(samples, 2, 1.0, 1.5) > 0.1  # a tone, not silence


def test_synthesize_is_fast_and_honours_layout(tmp_path: Path) -> None:
    """Eight seconds of mp3 take well under a second; mono and other rates are honoured."""
    started = time.perf_counter()
    synthesize(tmp_path / "long.mp3", duration=8.0)
    assert time.perf_counter() - started < 1.0
    info = synthesize(
        tmp_path / "mono.wav", duration=0.5, format="wav", channels=1, sample_rate=22050
    )
    assert (info.channels, info.sample_rate, info.duration) == (1, 22050, 0.5)


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
@pytest.mark.parametrize("duration", [1.5, 0.123, 2.71828])
def test_trim_keeps_the_requested_duration(
    fmt: str, duration: float, sources: dict[str, Path], tmp_path: Path
) -> None:
    """trim's result decodes to the requested duration within one codec frame."""
    dest = tmp_path / f"cut.{fmt}"
    info = trim(sources[fmt], dest, duration=duration)
    assert info.format == fmt
    assert abs(decoded_samples(dest) - round(duration * RATE)) <= FRAME[fmt]
    assert info.duration == pytest.approx(duration, abs=(FRAME[fmt] + 1) / RATE)


@pytest.mark.parametrize("fmt", [fmt for fmt in SUPPORTED_FORMATS if fmt not in ("mp3", "wav")])
def test_trim_other_formats(fmt: str, sources: dict[str, Path], tmp_path: Path) -> None:
    """flac and ogg trim within one codec frame too."""
    dest = tmp_path / f"cut.{fmt}"
    trim(sources[fmt], dest, duration=1.5)
    assert abs(decoded_samples(dest) - round(1.5 * RATE)) <= FRAME[fmt]


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_fade_out_silences_the_end(fmt: str, sources: dict[str, Path], tmp_path: Path) -> None:
    """The fade-out lowers the last 10 ms far below the middle; without it they stay loud."""
    trim(sources[fmt], tmp_path / f"faded.{fmt}", duration=1.5, fade_out=0.05)
    trim(sources[fmt], tmp_path / f"plain.{fmt}", duration=1.5, fade_out=0)
    faded, channels = decode(tmp_path / f"faded.{fmt}")
    plain, _ = decode(tmp_path / f"plain.{fmt}")
    middle = rms(faded, channels, 0.5, 1.0)
    assert rms(faded, channels, 1.49, 1.5) < 0.2 * middle
    assert rms(plain, channels, 1.49, 1.5) > 0.5 * middle
    # The fade touches only its own 50 ms.
    assert rms(faded, channels, 1.3, 1.4) == pytest.approx(rms(plain, channels, 1.3, 1.4), rel=0.05)


def test_trim_longer_than_the_source_keeps_it_whole(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    """A duration at or past the end keeps every sample, unfaded and unpadded."""
    original, _ = decode(sources["wav"])
    for duration in (4.0, 10.0):
        dest = tmp_path / f"whole-{duration}.wav"
        info = trim(sources["wav"], dest, duration=duration, fade_out=1.0)
        assert info.duration == 4.0
        assert decode(dest)[0] == original


def test_trim_without_duration_converts_mp3_to_wav(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    """duration=None with another format re-encodes the whole file."""
    info = trim(sources["mp3"], tmp_path / "converted.wav", duration=None, format="wav")
    assert (info.format, info.duration, info.sample_rate, info.channels) == ("wav", 4.0, RATE, 2)
    assert decoded_samples(tmp_path / "converted.wav") == decoded_samples(sources["mp3"])


def test_trim_defaults_to_the_source_format(sources: dict[str, Path], tmp_path: Path) -> None:
    """Without format, the output is encoded like the source, whatever dest's suffix says."""
    assert trim(sources["mp3"], tmp_path / "audio.bin", duration=1.0).format == "mp3"


def test_trim_can_replace_its_source(tmp_path: Path) -> None:
    """Trimming a file onto itself works, because dest is written aside and moved in."""
    path = tmp_path / "self.wav"
    synthesize(path, duration=2.0, format="wav")
    assert trim(path, path, duration=0.5).duration == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["self.wav"]


@pytest.mark.parametrize(
    ("name", "content"),
    [("garbage.mp3", b"\x13\x37not audio at all" * 500), ("empty.wav", b""), ("missing.mp3", None)],
)
def test_unreadable_files_raise_audio_processing_error(
    name: str, content: bytes | None, tmp_path: Path
) -> None:
    """Garbage, empty and missing files raise AudioProcessingError naming the file."""
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioProcessingError, match=name):
        probe(path)
    with pytest.raises(AudioProcessingError, match=name):
        probe(path, exact=True)
    with pytest.raises(AudioProcessingError, match=name):
        trim(path, tmp_path / "out.mp3", duration=1.0, format="mp3")
    assert not (tmp_path / "out.mp3").exists()
    assert not list(tmp_path.glob(".*.part"))


def test_a_file_without_audio_is_refused(tmp_path: Path) -> None:
    """A video-only file is not audio."""
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as output:
        stream = output.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for index in range(3):
            frame = av.VideoFrame(32, 32, "yuv420p")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    with pytest.raises(AudioProcessingError, match="no audio stream"):
        probe(path)


def test_unknown_output_format_lists_the_supported_ones(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    """An unknown format name is refused with the list of formats that would work."""
    with pytest.raises(AudioProcessingError, match=r"'aiff' \(supported: mp3, wav"):
        trim(sources["wav"], tmp_path / "out.aiff", duration=1.0, format="aiff")
    with pytest.raises(AudioProcessingError, match="supported: mp3, wav"):
        synthesize(tmp_path / "out.xyz", duration=1.0, format="xyz")


@pytest.mark.parametrize(
    ("duration", "fade_out"), [(0.0, 0.05), (-1.0, 0.05), (math.nan, 0.05), (1.0, -0.1)]
)
def test_bad_arguments_raise_audio_processing_error(
    duration: float, fade_out: float, sources: dict[str, Path], tmp_path: Path
) -> None:
    """Nonsensical durations are refused with AudioProcessingError, not ValueError."""
    with pytest.raises(AudioProcessingError, match="must be"):
        trim(sources["wav"], tmp_path / "out.wav", duration=duration, fade_out=fade_out)


def test_trimming_a_large_wav_uses_bounded_memory(tmp_path: Path) -> None:
    """A 60 s stereo WAV (~10 MB) is trimmed without holding it in memory."""
    source = synthesize(tmp_path / "big.wav", duration=60.0, format="wav")
    assert source.size > 10_000_000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        info = trim(tmp_path / "big.wav", tmp_path / "cut.wav", duration=45.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    assert info.duration == 45.0
    assert peak < source.size / 20
    assert rss_growth < source.size / 2


def test_paths_may_be_strings(tmp_path: Path) -> None:
    """synthesize, probe and trim take str paths as well as Path objects."""
    source, dest = str(tmp_path / "tone.wav"), str(tmp_path / "cut.wav")
    assert synthesize(source, duration=1.0, format="wav").duration == pytest.approx(1.0)
    assert trim(source, dest, duration=0.5).duration == pytest.approx(0.5)
    assert probe(dest, exact=True).duration == pytest.approx(0.5)
