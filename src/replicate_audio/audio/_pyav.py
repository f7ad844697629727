"""The PyAV path: synthesize tones, probe, and trim by decoding, fading and re-encoding.

Everything streams frame by frame, so memory stays bounded whatever the length of the file.
It serves every format, and is the fallback whenever the fast paths (:mod:`.wav`,
:mod:`.mp3`) cannot serve a stream.
"""

from __future__ import annotations

import contextlib
import math
import os
from array import array
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import attrs
import av
import av.filter
from av.audio.stream import AudioStream
from av.container import InputContainer

from ..errors import AudioProcessingError
from ..storage.protocols import AudioInfo
from ._files import failures, replacing

__all__ = ["SUPPORTED_FORMATS", "probe", "reencode", "require_positive", "synthesize"]

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
    require_positive(action, duration=duration, sample_rate=sample_rate, frequency=frequency)
    if channels not in (1, 2):
        raise AudioProcessingError(f"cannot {action}: channels must be 1 or 2, not {channels!r}")
    with failures(action):
        tone = _tone(duration, sample_rate, channels, frequency)
        samples = _cut(tone, channels, max(1, round(duration * sample_rate)), 0)
        _encode(samples, path, encoding, sample_rate, channels)
    return probe(path, exact=False)


def probe(path: Path, *, exact: bool) -> AudioInfo:
    """Describe *path* by opening it with PyAV; see :func:`replicate_audio.audio.probe`."""
    with failures(f"probe {path}"), _open_audio(path) as (container, stream):
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


def reencode(
    source: Path, dest: Path, *, duration: float | None, fade_out: float, format: str | None
) -> None:
    """Decode *source*, cut and fade it, and encode *dest*; see :func:`.trim`."""
    action = f"trim {source} into {dest}"
    with failures(action), _open_audio(source) as (container, stream):
        encoding = _encoding(format or _format_name(container, source), dest)
        rate, channels = stream.codec_context.sample_rate, min(stream.codec_context.channels, 2)
        if rate <= 0 or channels <= 0:
            raise AudioProcessingError(f"cannot {action}: the audio stream has no sample rate")
        samples = _decode(container, stream, rate, channels)
        if duration is not None:
            limit = max(1, round(duration * rate))
            samples = _cut(samples, channels, limit, round(fade_out * rate))
        _encode(samples, dest, encoding, rate, channels)


def require_positive(action: str, **values: float) -> None:
    """Refuse any of *values* that is not a finite positive number."""
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
    with (
        replacing(dest) as partial,
        av.open(str(partial), "w", format=encoding.container) as output,
    ):
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
