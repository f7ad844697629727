"""In-process audio work: synthesize tones, probe, and trim with a fade-out.

MP3 and PCM WAV take a fast path that never re-encodes (:mod:`.mp3`, :mod:`.wav`): the kept
part of the source is copied as it is, only the fade is rewritten. Everything else (FLAC,
Ogg, a change of format, a stream the fast path cannot serve) is decoded, faded and
re-encoded with PyAV (:mod:`._pyav`). Memory stays bounded whatever the length of the file.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from ..errors import AudioProcessingError
from ..storage.protocols import AudioInfo
from . import mp3, wav
from ._files import FastPathUnavailable, failures
from ._pyav import SUPPORTED_FORMATS, reencode, require_positive, synthesize
from ._pyav import probe as _probe_decoded

__all__ = ["AudioInfo", "SUPPORTED_FORMATS", "probe", "synthesize", "trim"]

logger = logging.getLogger(__name__)

_FAST_PATHS = {"wav": wav.trim, "mp3": mp3.trim}


def probe(path: str | os.PathLike[str], *, exact: bool = False) -> AudioInfo:
    """Describe the audio file at *path*: format, duration, size, sample rate and channels.

    The first frame is always decoded, so a file that merely looks like audio is refused.
    An MP3's duration comes from its Xing/LAME header when it has one (the frame count less
    the encoder delay and padding: what a gapless decoder plays), without decoding.

    Args:
        path: The file to read.
        exact: Decode the whole file and count samples instead of trusting the container's
            duration (counting is also the fallback when the container gives none). An MP3
            with a LAME header is exact already and is not decoded.

    Returns:
        The file's :class:`AudioInfo`; ``format`` is a short name such as ``"mp3"`` or ``"wav"``.

    Raises:
        AudioProcessingError: the file is missing, empty, corrupt or has no audio stream.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = synthesize(folder / "beep.wav", duration=0.5, format="wav")
        >>> probe(folder / "beep.wav")
        AudioInfo(format='wav', duration=0.5, size=88278, sample_rate=44100, channels=2)
    """
    path = Path(path)
    gapless = None
    if path.suffix.lower() == ".mp3" or exact:
        with failures(f"probe {path}"):
            gapless = mp3.gapless_duration(path)
    info = _probe_decoded(path, exact=exact and gapless is None)
    if gapless is not None and info.format == "mp3":
        return AudioInfo(info.format, gapless, info.size, info.sample_rate, info.channels)
    return info


def trim(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    duration: float | None,
    fade_out: float = 0.05,
    format: str | None = None,
) -> AudioInfo:
    """Keep the first *duration* seconds of *source*, fade out their end, and write *dest*.

    MP3 and PCM WAV (16-, 24-, 32-bit integer, float) are not re-encoded: the kept samples
    (WAV) or frames (MP3) are copied bit for bit, and only the fade is rewritten. A WAV is
    cut to the sample; an MP3 to the sample for decoders that read its LAME header (FFmpeg
    and most players), else within one frame. Other formats, and changes of format, are
    decoded and re-encoded, and decode to *duration* within one codec frame (for flac
    exactly; for ogg Vorbis a few hundred samples more). A source no longer than *duration*
    is kept whole, unfaded and unpadded. More than two channels are mixed down to stereo.

    Args:
        source: The audio file to read.
        dest: Where to write the result (replaced atomically once complete).
        duration: Seconds to keep, or None to keep everything.
        fade_out: Seconds of fade to silence before the cut; 0 for none.
        format: Output format from :data:`SUPPORTED_FORMATS`; by default the source's.

    Returns:
        What :func:`probe` says about *dest*.

    Raises:
        AudioProcessingError: a bad argument or format, *source* cannot be decoded, or
            *dest* cannot be written.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = synthesize(folder / "in.wav", duration=2.0, format="wav")
        >>> trim(folder / "in.wav", folder / "out.wav", duration=1.5).duration
        1.5
    """
    source, dest = Path(source), Path(dest)
    action = f"trim {source} into {dest}"
    if duration is not None:
        require_positive(action, duration=duration)
    if not (math.isfinite(fade_out) and fade_out >= 0):
        raise AudioProcessingError(f"cannot {action}: fade_out must be >= 0, not {fade_out!r}")
    with failures(action):
        kind = _sniff(source)
    fast = _FAST_PATHS.get(kind or "")
    if fast is not None and format in (None, kind):
        try:
            with failures(action):
                info = fast(source, dest, duration=duration, fade_out=fade_out)
            return info or probe(dest)
        except FastPathUnavailable as unavailable:
            logger.debug("trim %s: re-encoding, %s", source, unavailable.reason)
    reencode(source, dest, duration=duration, fade_out=fade_out, format=format)
    return probe(dest)


def _sniff(path: Path) -> str | None:
    """``"wav"`` or ``"mp3"`` when the first bytes say so, else None."""
    with path.open("rb") as file:
        head = file.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    # An ID3v2 tag, or an MPEG audio frame sync (11 set bits) straight away.
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None
