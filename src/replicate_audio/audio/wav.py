"""The WAV fast path: cut a PCM WAV without decoding what is kept.

The samples before the fade are copied as they are (by the kernel where it can), only the
fade window's samples are rewritten, and the size fields are fixed. Layout, from Microsoft's
RIFF/WAVE and WAVE_FORMAT_EXTENSIBLE specifications (all fields little-endian):

- ``RIFF`` <u32 size of everything after this field> ``WAVE``, then chunks, each
  <4-byte id> <u32 payload size> <payload> and a pad byte when the size is odd.
- ``fmt `` payload: wFormatTag u16 (1 PCM, 3 IEEE float, 0xFFFE extensible), nChannels u16,
  nSamplesPerSec u32, nAvgBytesPerSec u32, nBlockAlign u16 (bytes per sample frame),
  wBitsPerSample u16; then cbSize u16 and, for extensible, wValidBitsPerSample u16,
  dwChannelMask u32 and the SubFormat GUID whose first two bytes are the format tag (1 or 3)
  and whose other 14 are ``00 00 00 00 10 00 80 00 00 AA 00 38 9B 71``.
- ``fact`` payload (non-PCM files, float among them): dwSampleLength u32, sample frames.
- ``data`` payload: interleaved sample frames; 8-bit samples are unsigned, wider integers
  signed two's complement, floats IEEE 754.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from pathlib import Path

import attrs

from ..storage.protocols import AudioInfo
from ._files import FastPathUnavailable, copy_range, replacing

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")
#: (format tag, bits per sample) -> array typecode of one sample; "3" is 24-bit, no typecode.
_SAMPLE_TYPES = {(_PCM, 8): "B", (_PCM, 16): "h", (_PCM, 24): "3", (_PCM, 32): "i"}
_SAMPLE_TYPES |= {(_FLOAT, 32): "f", (_FLOAT, 64): "d"}
_MAX_CHUNKS = 1000


@attrs.frozen
class WavLayout:
    """Where a WAV's fields and samples are, and what a sample is."""

    rate: int
    channels: int
    block_align: int
    sample_type: str
    #: Offset of the first sample (the ``data`` payload) and of the ``data`` size field.
    data_start: int
    #: Whole sample frames in ``data`` (no more than the file holds).
    frames: int
    #: Offset of the ``fact`` chunk's dwSampleLength, if there is one before ``data``.
    fact_at: int | None


def read_layout(fd: int, size: int) -> WavLayout:
    """Walk the chunks of the WAV open as *fd* up to ``data``.

    Raises:
        FastPathUnavailable: not a PCM or float WAV with one or two channels, or malformed.
    """
    riff = os.pread(fd, 12, 0)
    if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        raise FastPathUnavailable("not a RIFF/WAVE file")
    offset, fmt, fact_at = 12, None, None
    for _ in range(_MAX_CHUNKS):
        head = os.pread(fd, 8, offset)
        if len(head) < 8:
            raise FastPathUnavailable("the WAV has no data chunk")
        chunk_id, chunk_size = head[:4], int.from_bytes(head[4:], "little")
        payload = offset + 8
        if chunk_id == b"fmt ":
            fmt = os.pread(fd, min(chunk_size, 40), payload)
        elif chunk_id == b"fact" and chunk_size >= 4:
            fact_at = payload
        elif chunk_id == b"data":
            if fmt is None:
                raise FastPathUnavailable("the WAV's data chunk comes before its fmt chunk")
            return _layout(fmt, payload, min(chunk_size, size - payload), fact_at)
        offset = payload + chunk_size + (chunk_size & 1)
    raise FastPathUnavailable(f"no data chunk in the first {_MAX_CHUNKS} chunks")


def _layout(fmt: bytes, data_start: int, data_size: int, fact_at: int | None) -> WavLayout:
    if len(fmt) < 16:
        raise FastPathUnavailable("the WAV's fmt chunk is shorter than 16 bytes")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE:
        # cbSize >= 22, then wValidBitsPerSample, dwChannelMask, SubFormat at bytes 24-40.
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise FastPathUnavailable("a WAVE_FORMAT_EXTENSIBLE header with an unknown SubFormat")
        tag = int.from_bytes(fmt[24:26], "little")
    sample_type = _SAMPLE_TYPES.get((tag, bits))
    if sample_type is None:
        raise FastPathUnavailable(f"WAV format tag {tag:#x} with {bits}-bit samples")
    if channels not in (1, 2) or rate <= 0 or block_align != channels * bits // 8:
        raise FastPathUnavailable(f"a WAV of {channels} channels, block align {block_align}")
    return WavLayout(rate, channels, block_align, sample_type, data_start,
                     data_size // block_align, fact_at)  # fmt: skip


def trim(source: Path, dest: Path, *, duration: float | None, fade_out: float) -> AudioInfo:
    """Keep the first *duration* seconds of the WAV *source* in *dest*, fading the last
    *fade_out* of them, without decoding the rest; see :func:`replicate_audio.audio.trim`.

    Raises:
        FastPathUnavailable: *source* is not a WAV this path serves (nothing is written).
        OSError: *source* cannot be read or *dest* written.
    """
    with source.open("rb", buffering=0) as reader:
        fd = reader.fileno()
        layout = read_layout(fd, os.fstat(fd).st_size)
        frames = layout.frames
        limit = frames if duration is None else min(frames, max(1, round(duration * layout.rate)))
        # A source no longer than the cut is kept whole, and unfaded.
        fade = min(limit, round(fade_out * layout.rate)) if limit < frames else 0
        kept = limit * layout.block_align
        with replacing(dest) as partial, partial.open("wb", buffering=0) as writer:
            out = writer.fileno()
            copy_range(fd, out, 0, layout.data_start + (limit - fade) * layout.block_align)
            fade_bytes = fade * layout.block_align
            window = os.pread(fd, fade_bytes, layout.data_start + kept - fade_bytes)
            if len(window) != fade_bytes:
                raise FastPathUnavailable("the WAV ends before the samples its header promises")
            os.write(out, _faded(window, layout))
            if kept & 1:
                os.write(out, b"\0")  # RIFF pads odd-sized chunks
            # RIFF size: everything after its own field; data size: the samples kept.
            os.pwrite(out, (layout.data_start + kept + (kept & 1) - 8).to_bytes(4, "little"), 4)
            os.pwrite(out, kept.to_bytes(4, "little"), layout.data_start - 4)
            if layout.fact_at is not None:
                os.pwrite(out, limit.to_bytes(4, "little"), layout.fact_at)  # dwSampleLength
        size = layout.data_start + kept + (kept & 1)
    return AudioInfo("wav", limit / layout.rate, size, layout.rate, layout.channels)


def _faded(window: bytes, layout: WavLayout) -> bytes:
    """*window* ramped linearly down to silence: the gain of frame i of n is (n - 1 - i) / n,
    so the last frame is silent, as on the PyAV path."""
    count, channels = len(window) // layout.block_align, layout.channels
    wide = layout.sample_type == "3"
    data = _widen_24(window) if wide else window
    if layout.sample_type in ("f", "d"):
        floats: array[float] = array(layout.sample_type)
        floats.frombytes(data)
        _native(floats)
        for index, value in enumerate(floats):
            floats[index] = value * (count - 1 - index // channels) / count
        _native(floats)
        return floats.tobytes()
    ints: array[int] = array("i" if wide else layout.sample_type)
    ints.frombytes(data)
    _native(ints)
    # 8-bit samples are unsigned around 128; wider ones are signed around 0.
    middle = 128 if layout.sample_type == "B" else 0
    for index, value in enumerate(ints):
        ints[index] = middle + round((value - middle) * (count - 1 - index // channels) / count)
    _native(ints)
    return _narrow_24(ints.tobytes()) if wide else ints.tobytes()


def _native(samples: array[int] | array[float]) -> None:
    """Swap little-endian samples to the machine's order, or back (a no-op on most)."""
    if sys.byteorder == "big":
        samples.byteswap()


def _widen_24(data: bytes) -> bytes:
    """Little-endian 24-bit samples as 32-bit ones (shifted up 8 bits, low byte zero)."""
    wide = bytearray(len(data) // 3 * 4)
    wide[1::4], wide[2::4], wide[3::4] = data[0::3], data[1::3], data[2::3]
    return bytes(wide)


def _narrow_24(data: bytes) -> bytes:
    """The inverse of :func:`_widen_24`: the top three bytes of each 32-bit sample."""
    narrow = bytearray(len(data) // 4 * 3)
    narrow[0::3], narrow[1::3], narrow[2::3] = data[1::4], data[2::4], data[3::4]
    return bytes(narrow)
