"""The WAV fast path: PCM and float WAVs cut to the sample without decoding what is kept."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_checks import assert_decodes_cleanly, assert_faded, decode, run_ffmpeg
from replicate_audio.audio import probe, synthesize, trim
from replicate_audio.audio.wav import read_layout
from replicate_audio.errors import AudioProcessingError

#: codec, sample rate: every sample type the fast path serves, plain and extensible headers.
KINDS = {
    "s16": ("pcm_s16le", 44100),  # WAVE_FORMAT_PCM
    "s16-extensible": ("pcm_s16le", 96000),  # FFmpeg writes extensible above 48 kHz
    "s24-extensible": ("pcm_s24le", 44100),
    "s32-extensible": ("pcm_s32le", 44100),
    "u8": ("pcm_u8", 22050),
    "f32": ("pcm_f32le", 48000),  # WAVE_FORMAT_IEEE_FLOAT, with a fact chunk
    "f64": ("pcm_f64le", 44100),
}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    """A steady 3 s sine in every kind, mono and stereo, written by the ffmpeg command line
    (steady, so that the fade checks measure the fade, not the tone's own swell)."""
    folder = tmp_path_factory.mktemp("wavs")
    paths = {}
    for kind, (codec, rate) in KINDS.items():
        for channels in (1, 2):
            path = paths[kind, channels] = folder / f"{kind}-{channels}.wav"
            tone = f"sine=frequency=440:duration=3:sample_rate={rate}"
            run_ffmpeg("-f", "lavfi", "-i", tone, "-c:a", codec, "-ac", channels, path)
    return paths


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_every_sample_type_is_cut_to_the_sample_and_faded(
    kind: str, channels: int, wavs: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """The result decodes cleanly, has exactly the samples asked for, and fades out."""
    source, dest = wavs[kind, channels], tmp_path / "cut.wav"
    rate = KINDS[kind][1]
    info = trim(source, dest, duration=1.2345, fade_out=0.05)
    limit = round(1.2345 * rate)
    assert info == probe(dest) == probe(dest, exact=True)
    assert (info.duration, info.sample_rate, info.channels) == (limit / rate, rate, channels)
    assert_decodes_cleanly(dest)
    assert_faded(dest, limit, round(0.05 * rate))


@pytest.mark.parametrize("kind", ["s16", "s24-extensible", "f32"])
def test_the_samples_before_the_fade_are_copied_byte_for_byte(
    kind: str, wavs: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """Everything up to the fade window is the source's bytes; only the sizes (RIFF, data,
    fact's sample count) differ."""
    source, dest = wavs[kind, 2], tmp_path / "cut.wav"
    trim(source, dest, duration=1.0, fade_out=0.1)
    before, after = source.read_bytes(), dest.read_bytes()
    layout = read_layout_of(source)
    kept = layout.data_start + round(0.9 * layout.rate) * layout.block_align
    header = bytearray(before[: layout.data_start])
    header[4:8] = after[4:8]
    header[-4:] = (round(1.0 * layout.rate) * layout.block_align).to_bytes(4, "little")
    if layout.fact_at is not None:
        header[layout.fact_at : layout.fact_at + 4] = round(layout.rate).to_bytes(4, "little")
    assert after[: layout.data_start] == header
    assert after[layout.data_start : kept] == before[layout.data_start : kept]
    assert len(after) == layout.data_start + round(1.0 * layout.rate) * layout.block_align


def read_layout_of(path: Path):  # type: ignore[no-untyped-def]
    """The source's layout, as the fast path reads it."""
    with path.open("rb") as file:
        return read_layout(file.fileno(), path.stat().st_size)


@pytest.mark.parametrize("duration", [3.0, 7.5, None])
def test_a_cut_at_or_past_the_end_keeps_every_sample_unfaded(
    duration: float | None, wavs: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """A source no longer than the cut comes out sample for sample, with no fade."""
    source, dest = wavs["s24-extensible", 2], tmp_path / "whole.wav"
    info = trim(source, dest, duration=duration, fade_out=1.0)
    assert info.duration == 3.0
    assert decode(dest)[0] == decode(source)[0]
    assert_decodes_cleanly(dest)


def test_a_cut_inside_the_fade_fades_from_the_first_sample(tmp_path: Path) -> None:
    """A fade longer than what is kept starts at the first sample and still ends silent."""
    synthesize(tmp_path / "in.wav", duration=1.0, format="wav")
    info = trim(tmp_path / "in.wav", tmp_path / "out.wav", duration=0.01, fade_out=0.5)
    samples, channels, _ = decode(tmp_path / "out.wav")
    assert info.duration == 441 / 44100
    assert len(samples) == 441 * channels
    assert samples[-channels:].tolist() == [0.0] * channels


def test_odd_sized_data_gets_its_pad_byte(
    wavs: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """An odd number of 8-bit mono samples is followed by the pad byte RIFF asks for."""
    dest = tmp_path / "odd.wav"
    info = trim(wavs["u8", 1], dest, duration=101 / 22050, fade_out=0)
    assert info.duration == 101 / 22050
    assert dest.stat().st_size % 2 == 0
    assert_decodes_cleanly(dest)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda data: data.replace(b"data", b"junk"), id="no-data-chunk"),
        pytest.param(lambda data: data.replace(b"fmt ", b"xyz "), id="no-fmt-chunk"),
        pytest.param(lambda data: data[:20] + b"\x55\x00" + data[22:], id="unknown-format-tag"),
        pytest.param(lambda data: data[:34] + b"\x0c\x00" + data[36:], id="12-bit"),
    ],
)
def test_broken_wavs_fall_back_or_raise_audio_processing_error(
    mangle: object,
    wavs: dict[tuple[str, int], Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A WAV the fast path cannot serve is logged and re-encoded, or refused as bad input;
    never a foreign exception, never a partial dest."""
    source, dest = tmp_path / "broken.wav", tmp_path / "out.wav"
    source.write_bytes(mangle(wavs["s16", 2].read_bytes()))  # type: ignore[operator]
    with caplog.at_level(logging.DEBUG, logger="replicate_audio.audio"):
        try:
            trim(source, dest, duration=1.0)
        except AudioProcessingError as error:
            refused: str | None = str(error)
        else:
            refused = None
            assert_decodes_cleanly(dest)
    if refused is not None:
        assert "broken.wav" in refused
        assert not dest.exists()
    assert "re-encoding" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) in (["broken.wav"], ["broken.wav", "out.wav"])


def test_a_truncated_wav_keeps_what_it_holds(
    wavs: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """A data chunk that promises more than the file holds is read as far as it goes."""
    source, dest = tmp_path / "short.wav", tmp_path / "out.wav"
    source.write_bytes(wavs["s16", 2].read_bytes()[: 78 + 4 * 1000 + 3])
    assert trim(source, dest, duration=1.0).duration == 1000 / 44100
    assert_decodes_cleanly(dest)


def test_a_format_change_takes_the_pyav_path(
    wavs: dict[tuple[str, int], Path], tmp_path: Path
) -> None:
    """Asking for flac decodes and re-encodes; the WAV fast path does not write other formats."""
    info = trim(wavs["s16", 2], tmp_path / "out.flac", duration=1.0, format="flac")
    assert (info.format, info.duration) == ("flac", 1.0)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["s16", "s24-extensible", "f32"]),
    channels=st.sampled_from([1, 2]),
    duration=st.floats(0.3, 2.9),
    fade=st.floats(0.05, 0.25),
)
def test_any_cut_and_fade_holds_every_check(
    kind: str,
    channels: int,
    duration: float,
    fade: float,
    wavs: dict[tuple[str, int], Path],
    tmp_path: Path,
) -> None:
    """Random cuts and fade lengths: exact length, clean decoding, and the fade is there."""
    dest = tmp_path / "cut.wav"
    rate = KINDS[kind][1]
    info = trim(wavs[kind, channels], dest, duration=duration, fade_out=fade)
    assert info.duration == round(duration * rate) / rate
    assert_faded(dest, round(duration * rate), round(fade * rate))
