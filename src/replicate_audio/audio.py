"""In-process audio work with PyAV: synthesize tones, probe, trim with a fade-out, re-encode.

Everything streams frame by frame, so memory stays bounded whatever the length of the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
from array import array
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import attrs
import av
import av.filter
from av.audio.stream import AudioStream
from av.container import InputContainer

from .errors import AudioProcessingError
from .storage.protocols import AudioInfo

__all__ = ["AudioInfo", "SUPPORTED_FORMATS", "probe", "synthesize", "trim"]

# Between decoding and encoding, audio travels as interleaved native-endian float32
# (FFmpeg's "flt"), which `array("f")` reads and writes without numpy.
_WORKING_FORMAT = "flt"
_BYTES_PER_SAMPLE = 4


@attrs.frozen
class _Encoding:
    container: str
    codec: str
    options: dict[str, str] = attrs.field(factory=dict)


_ENCODINGS = {
    "mp3": _Encoding("mp3", "libmp3lame"),
    "wav": _Encoding("wav", "pcm_s16le"),
    "flac": _Encoding("flac", "flac"),
    # The PyAV wheels carry FFmpeg's own Vorbis encoder (not libvorbis), marked experimental.
    "ogg": _Encoding("ogg", "vorbis", {"strict": "experimental"}),
}


def _has_encoder(codec: str) -> bool:
    try:
        av.Codec(codec, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True


#: Output formats this installation can write (those whose encoder the PyAV build has).
SUPPORTED_FORMATS: tuple[str, ...] = tuple(
    name for name, encoding in _ENCODINGS.items() if _has_encoder(encoding.codec)
)


def synthesize(
    path: str | os.PathLike[str],
    *,
    duration: float,
    format: str = "mp3",
    sample_rate: int = 44100,
    channels: int = 2,
    frequency: float = 440.0,
) -> AudioInfo:
    """Write *duration* seconds of a tone gliding from *frequency* up to 1.5 x *frequency*.

    It has a 10 ms attack, a 50 ms release, a slow tremolo and a little deterministic noise:
    real audio that trimming and fading visibly change.

    Args:
        path: Where to write the file (replaced if it exists).
        duration: Length in seconds.
        format: One of :data:`SUPPORTED_FORMATS`.
        sample_rate: Samples per second (mp3 uses the nearest rate it supports).
        channels: 1 (mono) or 2 (stereo).
        frequency: Starting pitch in Hz.

    Returns:
        What :func:`probe` says about the written file.

    Raises:
        AudioProcessingError: a bad argument or format, or the file cannot be written.

    Example:
        >>> synthesize(Path("beep.wav"), duration=0.5, format="wav").duration  # doctest: +SKIP
        0.5
    """
    path = Path(path)
    action = f"synthesize {path}"
    encoding = _encoding(format, path)
    _require_positive(action, duration=duration, sample_rate=sample_rate, frequency=frequency)
    if channels not in (1, 2):
        raise AudioProcessingError(f"cannot {action}: channels must be 1 or 2, not {channels!r}")
    with _failures(action):
        tone = _tone(duration, sample_rate, channels, frequency)
        samples = _cut(tone, channels, max(1, round(duration * sample_rate)), 0)
        _encode(samples, path, encoding, sample_rate, channels)
    return probe(path)


def probe(path: str | os.PathLike[str], *, exact: bool = False) -> AudioInfo:
    """Describe the audio file at *path*: format, duration, size, sample rate and channels.

    The first frame is always decoded, so a file that merely looks like audio is refused.

    Args:
        path: The file to read.
        exact: Decode the whole file and count samples instead of trusting the container's
            duration (counting is also the fallback when the container gives none).

    Returns:
        The file's :class:`AudioInfo`; ``format`` is a short name such as ``"mp3"`` or ``"wav"``.

    Raises:
        AudioProcessingError: the file is missing, empty, corrupt or has no audio stream.

    Example:
        >>> probe(Path("beep.wav"))  # doctest: +SKIP
        AudioInfo(format='wav', duration=0.5, size=88278, sample_rate=44100, channels=2)
    """
    path = Path(path)
    with _failures(f"probe {path}"), _open_audio(path) as (container, stream):
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            raise AudioProcessingError(f"cannot probe {path}: no audio could be decoded")
        duration = None if exact else _metadata_duration(container, stream)
        if duration is None:
            duration = (first.samples + sum(frame.samples for frame in frames)) / first.sample_rate
        return AudioInfo(
            format=_format_name(container, path),
            duration=duration,
            size=path.stat().st_size,
            sample_rate=first.sample_rate,
            channels=first.layout.nb_channels,
        )


def trim(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    duration: float | None,
    fade_out: float = 0.05,
    format: str | None = None,
) -> AudioInfo:
    """Keep the first *duration* seconds of *source*, fade out their end, and write *dest*.

    The result decodes to *duration* within one codec frame (for mp3, wav and flac exactly;
    for ogg Vorbis a few hundred samples more). A source no longer than *duration* is kept
    whole, unfaded and unpadded. More than two channels are mixed down to stereo.

    Args:
        source: The audio file to read.
        dest: Where to write the result (replaced atomically once complete).
        duration: Seconds to keep, or None to keep everything (a plain re-encode).
        fade_out: Seconds of linear fade to silence before the cut; 0 for none.
        format: Output format from :data:`SUPPORTED_FORMATS`; by default the source's.

    Returns:
        What :func:`probe` says about *dest*.

    Raises:
        AudioProcessingError: a bad argument or format, *source* cannot be decoded, or
            *dest* cannot be written.

    Example:
        >>> trim(Path("in.mp3"), Path("out.mp3"), duration=1.5).duration  # doctest: +SKIP
        1.5
    """
    source, dest = Path(source), Path(dest)
    action = f"trim {source} into {dest}"
    if duration is not None:
        _require_positive(action, duration=duration)
    if not (math.isfinite(fade_out) and fade_out >= 0):
        raise AudioProcessingError(f"cannot {action}: fade_out must be >= 0, not {fade_out!r}")
    with _failures(action), _open_audio(source) as (container, stream):
        encoding = _encoding(format or _format_name(container, source), dest)
        rate, channels = stream.codec_context.sample_rate, min(stream.codec_context.channels, 2)
        if rate <= 0 or channels <= 0:
            raise AudioProcessingError(f"cannot {action}: the audio stream has no sample rate")
        samples = _decode(container, stream, rate, channels)
        if duration is not None:
            limit = max(1, round(duration * rate))
            samples = _cut(samples, channels, limit, round(fade_out * rate))
        _encode(samples, dest, encoding, rate, channels)
    return probe(dest)


@contextlib.contextmanager
def _failures(action: str) -> Iterator[None]:
    """Turn whatever PyAV or the filesystem raises into one AudioProcessingError."""
    try:
        yield
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise AudioProcessingError(f"cannot {action}: {reason}") from error


def _require_positive(action: str, **values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise AudioProcessingError(f"cannot {action}: {name} must be positive, not {value!r}")


@contextlib.contextmanager
def _open_audio(path: Path) -> Iterator[tuple[InputContainer, AudioStream]]:
    with av.open(str(path), "r") as container:
        if not container.streams.audio:
            raise AudioProcessingError(f"cannot read {path}: it has no audio stream")
        yield container, container.streams.audio[0]


def _encoding(name: str, path: Path) -> _Encoding:
    if name not in SUPPORTED_FORMATS:
        supported = ", ".join(SUPPORTED_FORMATS)
        raise AudioProcessingError(
            f"cannot write {path}: unsupported format {name!r} (supported: {supported})"
        )
    return _ENCODINGS[name]


def _format_name(container: InputContainer, path: Path) -> str:
    # Demuxers may have several names ("mov,mp4,m4a,3gp,3g2,mj2"): prefer the file's suffix.
    names = container.format.name.split(",")
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in names else names[0]


def _metadata_duration(container: InputContainer, stream: AudioStream) -> float | None:
    # The stream's own duration counts samples; the container's is rounded to microseconds.
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration else None


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def _pcm(frame: av.AudioFrame, channels: int) -> bytes:
    # A plane's buffer may be padded past the last sample.
    return bytes(frame.planes[0])[: frame.samples * channels * _BYTES_PER_SAMPLE]


def _decode(
    container: InputContainer, stream: AudioStream, rate: int, channels: int
) -> Iterator[bytes]:
    """Decode *stream* into chunks of interleaved float32 at *rate* with *channels*."""
    resampler = av.AudioResampler(format=_WORKING_FORMAT, layout=_layout(channels), rate=rate)
    for frame in container.decode(stream):
        yield from (_pcm(out, channels) for out in resampler.resample(frame))
    yield from (_pcm(out, channels) for out in resampler.resample(None))


def _tone(duration: float, rate: int, channels: int, frequency: float) -> Iterator[bytes]:
    """An endless tone from FFmpeg's aevalsrc, which evaluates the expression in C (fast)."""
    glide = f"2*PI*t*({frequency!r}+{frequency!r}*t/(4*{duration!r}))"
    envelope = f"min(min(1,t/0.01),max(0,({duration!r}-t)/0.05))*(0.8+0.2*cos(6*PI*t))"
    expression = f"0.5*{envelope}*sin({glide})+0.01*(2*random(0)-1)"
    graph = av.filter.Graph()
    # One channel is computed and aformat copies it: half the work of one expression each.
    source = graph.add("aevalsrc", f"exprs={expression}:s={rate}:n=4096")
    convert = graph.add(
        "aformat", f"sample_fmts={_WORKING_FORMAT}:channel_layouts={_layout(channels)}"
    )
    sink = graph.add("abuffersink")
    graph.link_nodes(source, convert, sink).configure()
    while True:
        frame = sink.pull()
        assert isinstance(frame, av.AudioFrame)
        yield _pcm(frame, channels)


def _cut(chunks: Iterable[bytes], channels: int, limit: int, fade: int) -> Iterator[bytes]:
    """Pass on the first *limit* samples, fading the last *fade* of them if the source goes on.

    Samples in the fade window are held back until it is known whether the source is longer
    than *limit* (then they fade) or ends first (then nothing is cut, and nothing fades).
    """
    step = channels * _BYTES_PER_SAMPLE
    fade_start, end = max(0, limit - fade) * step, limit * step
    position = 0
    held = bytearray()
    for chunk in chunks:
        before = max(0, min(len(chunk), fade_start - position))
        if before:
            yield chunk[:before]
        within = max(before, min(len(chunk), end - position))
        held += chunk[before:within]
        if within < len(chunk):
            yield _fade(held, channels) if fade else bytes(held)
            return
        position += len(chunk)
    yield bytes(held)


def _fade(data: bytearray, channels: int) -> bytes:
    """Ramp *data* linearly down to silence: the last sample is zero."""
    samples = array("f")
    samples.frombytes(data)
    count = len(samples) // channels
    for index, value in enumerate(samples):
        samples[index] = value * (count - 1 - index // channels) / count
    return samples.tobytes()


def _encode(
    chunks: Iterable[bytes], dest: Path, encoding: _Encoding, rate: int, channels: int
) -> None:
    """Encode float32 *chunks* into *dest* through a temporary file, so *dest* is never partial."""
    rates = av.Codec(encoding.codec, "w").audio_rates
    encoder_rate = min(rates, key=lambda r: (abs(r - rate), r)) if rates else rate
    layout = _layout(channels)
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        with av.open(str(partial), "w", format=encoding.container) as output:
            stream = output.add_stream(encoding.codec, rate=encoder_rate, options=encoding.options)
            stream.codec_context.layout = layout
            written = 0
            for chunk in filter(None, chunks):
                count = len(chunk) // (channels * _BYTES_PER_SAMPLE)
                frame = av.AudioFrame(format=_WORKING_FORMAT, layout=layout, samples=count)
                frame.planes[0].update(chunk)
                frame.sample_rate, frame.time_base, frame.pts = rate, Fraction(1, rate), written
                written += count
                output.mux(stream.encode(frame))
            if not written:
                raise AudioProcessingError(f"cannot write {dest}: no audio was decoded")
            output.mux(stream.encode(None))
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
