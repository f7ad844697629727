"""The MP3 fast path: whole frames copied, a global_gain fade, a rewritten Xing/LAME frame."""

from __future__ import annotations

import logging
import math
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_checks import assert_decodes_cleanly, assert_faded, decode, ffmpeg, run_ffmpeg
from replicate_audio.audio import mp3, probe, synthesize, trim
from replicate_audio.errors import AudioProcessingError

CRC_CHECK = ("-err_detect", "crccheck")

#: name: ffmpeg encoder options; every branch of the fast path has a source.
SOURCES = {
    "stereo-cbr-44k": ["-b:a", "160k", "-joint_stereo", "0"],
    "joint-cbr-44k": ["-b:a", "128k"],
    "joint-vbr-48k": ["-q:a", "2", "-ar", "48000"],
    "mono-vbr-22k": ["-q:a", "4", "-ac", "1", "-ar", "22050"],  # MPEG-2
    "mono-cbr-11k": ["-b:a", "32k", "-ac", "1", "-ar", "11025"],  # MPEG-2.5
    "stereo-vbr-24k": ["-q:a", "5", "-ar", "24000"],  # MPEG-2 stereo
    "id3-tags": ["-b:a", "128k", "-metadata", "title=A tone", "-write_id3v1", "1"],
}


def frames_of(path: Path) -> tuple[bytes, list[bytes], bytes]:
    """The bytes before the first frame, the frames (Info frame first, if any), the rest."""
    data = path.read_bytes()
    start = 0
    if data[:3] == b"ID3":
        start = 10 + sum(byte << (7 * (3 - n)) for n, byte in enumerate(data[6:10]))
    end = len(data) - 128 if data[-128:-125] == b"TAG" else len(data)
    frames, offset = [], start
    while offset < end:
        header = mp3.parse_header(data[offset : offset + 4])
        assert header is not None, f"no frame at byte {offset} of {path}"
        frames.append(data[offset : offset + header.length])
        offset += header.length
    return data[:start], frames, data[end:]


def protect(source: Path, dest: Path) -> None:
    """Rewrite a 128 kbit/s MP3 encoded without bit reservoir as 160 kbit/s frames that carry
    a CRC-16: each frame's main data fits in its own, bigger frame (libmp3lame has no CRC
    option, and lame's --crc is not in FFmpeg)."""
    head, frames, tail = frames_of(source)
    out = [frames[0]]  # the Info frame stays as it is
    for frame in frames[1:]:
        header = mp3.parse_header(frame)
        assert header is not None
        assert header.mpeg1
        assert not header.protected
        word = header.word & ~(1 << 16) & ~(0xF << 12) & ~(1 << 9) | 10 << 12  # 160 kbit/s
        side = frame[4 : 4 + header.side_info]
        assert side[0] == 0
        assert side[1] >> 7 == 0
        body = word.to_bytes(4, "big")
        body += mp3.crc16_frame(body[2:4] + side).to_bytes(2, "big") + frame[4:]
        length = mp3.parse_header(body)
        assert length is not None
        out.append(body.ljust(length.length, b"\0"))
    dest.write_bytes(head + b"".join(out) + tail)


@pytest.fixture(scope="module")
def mp3s(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 4 s tone as an MP3 of every kind the fast path serves, and a few it does not."""
    folder = tmp_path_factory.mktemp("mp3s")
    tone = folder / "tone.wav"
    synthesize(tone, duration=4.0, format="wav")
    paths = {"pyav": folder / "pyav.mp3"}
    synthesize(paths["pyav"], duration=4.0, format="mp3")
    for name, options in SOURCES.items():
        paths[name] = folder / f"{name}.mp3"
        run_ffmpeg("-i", tone, "-c:a", "libmp3lame", *options, paths[name])
    paths["no-xing"] = folder / "no-xing.mp3"
    run_ffmpeg(
        "-i", tone, "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", paths["no-xing"]
    )
    plain = folder / "no-reservoir.mp3"
    run_ffmpeg("-i", tone, "-c:a", "libmp3lame", "-b:a", "128k", "-reservoir", "0", plain)
    protect(plain, paths.setdefault("crc", folder / "crc.mp3"))
    return paths


GAPLESS = [*SOURCES, "pyav", "crc"]


@pytest.mark.parametrize("name", GAPLESS)
@pytest.mark.parametrize("duration", [1.2345, 2.5])
def test_a_cut_is_exact_faded_and_decodes_cleanly(
    name: str, duration: float, mp3s: dict[str, Path], tmp_path: Path
) -> None:
    """FFmpeg and PyAV, reading the LAME header, decode exactly the samples asked for; the
    fade is there; the frames' CRCs check."""
    dest = tmp_path / "cut.mp3"
    info = trim(mp3s[name], dest, duration=duration, fade_out=0.05)
    rate = info.sample_rate
    limit = round(duration * rate)
    assert info == probe(dest) == probe(dest, exact=True)
    assert info.duration == limit / rate
    assert_decodes_cleanly(dest, *CRC_CHECK)
    assert_faded(dest, limit, round(0.05 * rate))


@pytest.mark.parametrize("name", ["joint-cbr-44k", "mono-vbr-22k", "id3-tags", "crc"])
def test_the_kept_frames_are_the_sources_byte_for_byte(
    name: str, mp3s: dict[str, Path], tmp_path: Path
) -> None:
    """Frames before the fade are the source's; faded ones differ only in side information
    (and CRC); the ID3 tags are kept; the cut is the first frame boundary past what a
    decoder needs (the request, the encoder delay and the decoder's 529 samples)."""
    dest = tmp_path / "cut.mp3"
    trim(mp3s[name], dest, duration=1.5, fade_out=0.1)
    head, source, tail = frames_of(mp3s[name])
    out_head, out, out_tail = frames_of(dest)
    assert (out_head, out_tail) == (head, tail)
    info = mp3.read_info_tag(out[0], mp3.parse_header(out[0]), 0)  # type: ignore[arg-type]
    assert info is not None
    assert info.frames == len(out) - 1
    header = mp3.parse_header(source[1])
    assert header is not None
    need = round(1.5 * header.sample_rate) + info.delay + mp3.DECODER_DELAY
    assert 0 <= info.frames * header.samples - need < header.samples
    assert (
        info.padding == info.frames * header.samples - round(1.5 * header.sample_rate) - info.delay
    )
    side_end = 4 + 2 * header.protected + header.side_info
    changed = [n for n, frame in enumerate(out[1:], 1) if frame != source[n]]
    assert changed, "the fade changed no frame"
    assert changed == list(range(changed[0], len(out)))
    assert (len(out) - changed[0]) * header.samples < 0.1 * header.sample_rate + 3 * 1152
    for n in changed:
        assert out[n][:4] == source[n][:4]
        assert out[n][side_end:] == source[n][side_end:]


@pytest.mark.parametrize("name", ["joint-cbr-44k", "mono-vbr-22k", "no-xing"])
def test_without_gapless_info_the_cut_is_within_a_frame(
    name: str, mp3s: dict[str, Path], tmp_path: Path
) -> None:
    """Decoding every frame (as a decoder that ignores the LAME header does) gives the
    request plus less than one frame, plus the encoder and decoder delays it then keeps."""
    dest = tmp_path / "cut.mp3"
    trim(mp3s[name], dest, duration=1.5)
    _, frames, _ = frames_of(dest)
    header = mp3.parse_header(frames[-1])
    assert header is not None
    tag = mp3.read_info_tag(frames[0], mp3.parse_header(frames[0]), 0)  # type: ignore[arg-type]
    audio = len(frames) - (tag is not None)
    delays = tag.delay + mp3.DECODER_DELAY if tag else 0
    extra = audio * header.samples - round(1.5 * header.sample_rate) - delays
    assert 0 <= extra < header.samples
    assert_decodes_cleanly(dest)
    if tag is None:  # nothing to say the exact length: FFmpeg plays every frame
        decoded = len(decode(dest)[0]) // decode(dest)[1]
        assert decoded == audio * header.samples


@pytest.mark.parametrize("duration", [0.01, 0.02])
def test_a_cut_inside_the_first_frame(
    duration: float, mp3s: dict[str, Path], tmp_path: Path
) -> None:
    """A cut shorter than one frame keeps the frames that decode it, exactly."""
    dest = tmp_path / "tiny.mp3"
    info = trim(mp3s["joint-cbr-44k"], dest, duration=duration)
    assert info.duration == round(duration * 44100) / 44100
    assert len(decode(dest)[0]) == round(duration * 44100) * 2
    assert_decodes_cleanly(dest)


@pytest.mark.parametrize("duration", [4.0, 4.5, None])
@pytest.mark.parametrize("name", ["joint-vbr-48k", "id3-tags", "no-xing"])
def test_a_cut_at_or_past_the_end_keeps_the_file_as_it_is(
    name: str, duration: float | None, mp3s: dict[str, Path], tmp_path: Path
) -> None:
    """A source no longer than the cut is copied unchanged: whole, unfaded."""
    dest = tmp_path / "whole.mp3"
    if name == "no-xing" and duration == 4.0:
        duration = 4.1  # without a LAME header, the encoder's delay and padding are audio
    trim(mp3s[name], dest, duration=duration, fade_out=1.0)
    assert dest.read_bytes() == mp3s[name].read_bytes()


def test_the_crc_check_is_real(mp3s: dict[str, Path], tmp_path: Path) -> None:
    """ffmpeg's crccheck does complain about a wrong CRC, so the tests above mean something."""
    head, frames, tail = frames_of(mp3s["crc"])
    broken = bytearray(frames[5])
    broken[4] ^= 0xFF
    path = tmp_path / "broken-crc.mp3"
    path.write_bytes(head + b"".join([*frames[:5], bytes(broken), *frames[6:]]) + tail)
    command = [ffmpeg(), "-v", "error", *CRC_CHECK, "-i", str(path), "-f", "null", "-"]
    assert "CRC" in subprocess.run(command, capture_output=True, text=True, check=False).stderr


def test_probe_reads_the_lame_header_without_decoding(
    mp3s: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """probe(exact=True) of an MP3 with a LAME header takes its length from the header."""
    assert mp3.gapless_duration(mp3s["mono-vbr-22k"]) == 4.0
    assert probe(mp3s["mono-vbr-22k"], exact=True).duration == 4.0
    assert mp3.gapless_duration(mp3s["no-xing"]) is None


def corrupt_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + b"\x13\x37" * 200 + data[middle + 400 :]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda data: data[: len(data) // 2 + 7], id="truncated"),
        pytest.param(corrupt_middle, id="garbage-inside"),
        pytest.param(lambda data: data[:44] + b"\xff\xfb\x00" + data[47:], id="free-format-first"),
        pytest.param(lambda data: data[:200] + b"\0" * 4000 + data[4200:], id="zeroed"),
    ],
)
@pytest.mark.parametrize("duration", [1.0, 3.9])
def test_broken_mp3s_fall_back_or_raise_audio_processing_error(
    mangle: object,
    duration: float,
    mp3s: dict[str, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream the fast path cannot serve is re-encoded (logged at debug level) or refused
    with AudioProcessingError; never a foreign exception, never a partial dest."""
    source, dest = tmp_path / "broken.mp3", tmp_path / "out.mp3"
    source.write_bytes(mangle(mp3s["joint-cbr-44k"].read_bytes()))  # type: ignore[operator]
    with caplog.at_level(logging.DEBUG, logger="replicate_audio.audio"):
        try:
            info = trim(source, dest, duration=duration)
        except AudioProcessingError as error:
            refused: str | None = str(error)
        else:
            refused = None
            assert info.duration <= duration + 1152 / 44100
            assert_decodes_cleanly(dest)
    if refused is not None:
        assert "broken.mp3" in refused
    past_the_damage = duration > 2 or "free-format" in str(mangle) or "zeroed" in str(mangle)
    assert ("re-encoding" in caplog.text) or not past_the_damage or refused is not None
    assert {p.name for p in tmp_path.iterdir()} <= {"broken.mp3", "out.mp3"}


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["joint-cbr-44k", "mono-vbr-22k", "crc"]),
    duration=st.floats(0.35, 3.8),
    fade=st.floats(0.05, 0.1),
)
def test_any_cut_and_fade_holds_every_check(
    name: str, duration: float, fade: float, mp3s: dict[str, Path], tmp_path: Path
) -> None:
    """Random cuts and fade lengths: exact length, clean decoding, CRCs, the fade is there."""
    dest = tmp_path / "cut.mp3"
    info = trim(mp3s[name], dest, duration=duration, fade_out=fade)
    limit = round(duration * info.sample_rate)
    assert info.duration == limit / info.sample_rate
    assert_decodes_cleanly(dest, *CRC_CHECK)
    assert_faded(dest, limit, round(fade * info.sample_rate))
    assert not math.isnan(info.duration)
