"""The MP3 fast path: cut MPEG-1/2/2.5 Layer III on a frame boundary without re-encoding.

Whole frames up to the cut are copied as they are; the fade steps each granule's
``global_gain`` down (the quantizer step, in the frame's side information) as mp3gain does;
the Xing/LAME frame is rewritten so that gapless decoders play exactly the samples asked for.
Spec facts relied on (ISO/IEC 11172-3 and 13818-3 Layer III; Xing VBR header; LAME tag rev 1,
gabriel.mp3-tech.org/mp3infotag.html):

- Frame header, 32 bits, big-endian: sync 11 (all set), version 2 (3 MPEG-1, 2 MPEG-2,
  0 MPEG-2.5), layer 2 (1 = Layer III), protection 1 (0: a CRC-16 follows the header),
  bitrate index 4 (0 free format, 15 forbidden), sampling rate index 2 (3 reserved),
  padding 1, private 1, mode 2 (3 mono), mode extension 2, copyright, original, emphasis 2.
  A frame is ``144 * bitrate / rate + padding`` bytes (MPEG-1) or ``72 * ...`` (MPEG-2/2.5)
  and holds 1152 samples (two granules of 576) or 576 (one granule).
- The CRC-16 (polynomial 0x8005, initial 0xFFFF) covers header bytes 2-3 and the side
  information; it follows the header, big-endian.
- Side information, 17/32 bytes (MPEG-1 mono/stereo) or 9/17 (MPEG-2/2.5): main_data_begin
  9 bits (8), private bits 5/3 (1/2), scfsi 4 per channel (MPEG-1 only), then per granule
  and channel part2_3_length 12, big_values 9, global_gain 8, and 38 more bits (MPEG-1: 59
  in all) or 42 (MPEG-2, whose scalefac_compress has 9 bits: 63 in all). global_gain sets
  the granule's amplitude in steps of 2^(1/4) (1.5 dB); main data is untouched by changing
  it, so a frame's bits stay valid.
- Xing/Info header, in the first frame after the side information: ``Xing`` (VBR) or
  ``Info`` (CBR), flags u32 (1 frames, 2 bytes, 4 TOC, 8 quality), then those fields:
  frames u32 (audio frames, not counting this one), bytes u32 (the stream, this frame
  included), TOC 100 bytes (entry i: the byte offset at i% of the duration, in 256ths of
  bytes), quality u32.
- LAME tag, right after: version 9 bytes (``LAME``, or ``Lavc``/``Lavf`` from FFmpeg), then
  at +21 encoder delay 12 bits and padding 12 bits, at +28 music length u32 (as bytes), at
  +32 music CRC, at +34 the tag's CRC-16 (polynomial 0x8005 reflected, initial 0, over the
  frame up to that field). A decoder reading it plays ``frames * 1152 - delay - padding``
  samples: it skips ``delay`` plus its own 529 samples of filter delay at the start, so
  ``padding`` must cover those 529 at the end.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs

from ..storage.protocols import AudioInfo
from ._files import FastPathUnavailable, copy_range, replacing
from ._mp3_stream import (
    DECODER_DELAY,
    FrameHeader,
    InfoTag,
    Stream,
    crc16_arc,
    crc16_frame,
    gapless_duration,
    open_stream,
    parse_header,
    read_info_tag,
)

# The stream-reading names are part of this module's surface too (the tests use them).
__all__ = [
    "DECODER_DELAY",
    "crc16_arc",
    "crc16_frame",
    "gapless_duration",
    "parse_header",
    "read_info_tag",
    "trim",
]

#: Where in its output a granule's fade gain is chosen, in samples from its first. A granule
#: touches 2 * 576 + 511 samples (two IMDCT halves overlap-added, then the synthesis
#: filter's 512 taps); choosing the gain of the linear fade at 2 * 576 + 223, past the bulk
#: of its energy, measured closest to a linear fade while keeping the last 20 ms 15 dB and
#: the last 5 ms 40 dB down (the gain at the very last sample: 29 and 100 dB, a shorter fade).
_GRANULE_REACH = 2 * 576 + 223


def trim(source: Path, dest: Path, *, duration: float | None, fade_out: float) -> AudioInfo | None:
    """Keep the first *duration* seconds of the MP3 *source* in *dest*, fading the last
    *fade_out* of them, without re-encoding; see :func:`replicate_audio.audio.trim`.

    Returns:
        *dest*'s description when the LAME header tells its exact duration, else None (then
        the caller probes *dest*).

    Raises:
        FastPathUnavailable: a stream this path cannot serve (free format, a malformed
            frame, a Xing frame count the stream does not match); nothing is written.
        OSError: *source* cannot be read or *dest* written.
    """
    with source.open("rb", buffering=0) as reader:
        fd = reader.fileno()
        stream = open_stream(fd, os.fstat(fd).st_size)
        first, tag = stream.first, stream.tag
        rate, spf = first.sample_rate, first.samples
        gapless = tag is not None and tag.gapless
        # Output sample 0 is decoded sample `lag`: the encoder delay and the decoder's own.
        lag = tag.delay + DECODER_DELAY if tag is not None and gapless else 0
        limit = None if duration is None else max(1, round(duration * rate))
        total = tag.samples() if tag is not None else None
        if limit is not None and total is not None and limit >= total:
            limit = None  # no longer than the cut: kept whole
        wanted = None if limit is None else math.ceil((limit + lag) / spf)
        fade = 0 if limit is None else min(limit, round(fade_out * rate))
        plan = _Plan(limit or 0, fade, lag, first.samples // 576)
        scan = _scan(fd, stream, wanted, plan)
        if wanted is None or scan.frames < wanted:
            if tag is not None and tag.frames is not None and tag.frames != scan.frames:
                raise FastPathUnavailable(
                    f"the Xing header counts {tag.frames} frames, the stream has {scan.frames}"
                )
            with replacing(dest) as partial, partial.open("wb", buffering=0) as writer:
                copy_range(fd, writer.fileno(), 0, os.fstat(fd).st_size)
            whole = tag.samples() if tag is not None else None
            return _info(dest, whole, first)
        assert limit is not None
        kept_bytes = scan.cut - stream.start
        with replacing(dest) as partial, partial.open("wb", buffering=0) as writer:
            out = writer.fileno()
            copy_range(fd, out, 0, stream.start)  # the ID3v2 tag, as it is
            if tag is not None:
                padding = wanted * spf - limit - tag.delay
                os.write(
                    out,
                    _info_frame(
                        fd, tag, frames=wanted, size=kept_bytes, padding=padding, toc=scan.toc
                    ),
                )
            copy_range(fd, out, stream.audio_start, scan.cut - stream.audio_start)
            for index, offset in scan.faded:
                head = os.pread(fd, 6 + first.side_info, offset)
                os.pwrite(out, _faded_side_info(head, index, plan), offset)
            if stream.end < os.fstat(fd).st_size:
                copy_range(fd, out, stream.end, 128)  # the ID3v1 tag
    return _info(dest, limit if gapless else None, first)


def _info(dest: Path, samples: int | None, first: FrameHeader) -> AudioInfo | None:
    if samples is None:
        return None
    rate, channels = first.sample_rate, 1 if first.mono else 2
    return AudioInfo("mp3", samples / rate, dest.stat().st_size, rate, channels)


@attrs.frozen
class _Plan:
    """The fade: which granules it lowers, and by how much."""

    limit: int
    fade: int
    lag: int
    granules: int  # per frame

    def first_frame(self) -> int:
        """The first frame with a granule the fade lowers."""
        if not self.fade:
            return 1 << 62
        # A granule g reaches output samples up to 576 g + reach - lag.
        granule = math.ceil((self.limit - self.fade - _GRANULE_REACH + self.lag) / 576)
        return max(0, granule) // self.granules

    def steps(self, granule: int) -> int | None:
        """How many global_gain steps to take off *granule* (None: down to silence): those
        of the linear fade late in the granule's output (see ``_GRANULE_REACH``)."""
        reach = 576 * granule + _GRANULE_REACH - self.lag
        level = (self.limit - reach) / self.fade
        if level >= 1:
            return 0
        if level <= 0:
            return None
        return math.ceil(-4 * math.log2(level))  # a step is 2^(1/4)


@attrs.frozen
class _Scan:
    frames: int
    cut: int  # the byte after the last kept frame
    faded: tuple[tuple[int, int], ...]  # (frame index, offset)
    toc: bytes


def _scan(fd: int, stream: Stream, wanted: int | None, plan: _Plan) -> _Scan:
    """Walk the frame headers from the first audio frame up to *wanted* frames (or the end),
    checking that each is a whole Layer III frame of the same stream."""
    key, reader = stream.first.stream_key, _Reader(fd)
    first_faded = plan.first_frame()
    # TOC entry n: the frame at n% of those kept.
    marks = [] if wanted is None else [wanted * n // 100 for n in range(100)]
    offsets_at = dict.fromkeys(marks, stream.audio_start)
    faded = []
    offset, count = stream.audio_start, 0
    while (wanted is None or count < wanted) and offset < stream.end:
        header = parse_header(reader.read(offset, 4))
        if header is None or header.stream_key != key:
            raise FastPathUnavailable(f"no frame header of the stream at byte {offset}")
        if offset + header.length > stream.end:
            raise FastPathUnavailable(f"the frame at byte {offset} is cut short")
        if count in offsets_at:
            offsets_at[count] = offset
        if count >= first_faded:
            faded.append((count, offset))
        offset, count = offset + header.length, count + 1
    total = offset - stream.start
    toc = bytes(min(255, (offsets_at[n] - stream.start) * 256 // total) for n in marks)
    return _Scan(count, offset, tuple(faded), toc)


class _Reader:
    """Reads through one 64 KiB window at a time: few system calls, bounded memory."""

    def __init__(self, fd: int) -> None:
        self.fd, self.start, self.data = fd, 0, b""

    def read(self, offset: int, count: int) -> bytes:
        if not self.start <= offset <= self.start + len(self.data) - count:
            self.start, self.data = offset, os.pread(self.fd, max(count, 1 << 16), offset)
        return self.data[offset - self.start : offset - self.start + count]


def _info_frame(
    fd: int, tag: InfoTag, *, frames: int, size: int, padding: int, toc: bytes
) -> bytes:
    """The Info frame of the cut: its frame and byte counts, TOC, padding and CRC rewritten."""
    frame = bytearray(os.pread(fd, tag.header.length, tag.at))
    position = tag.xing + 8
    if tag.flags & 1:  # frames: audio frames, not counting this one
        frame[position : position + 4] = frames.to_bytes(4, "big")
        position += 4
    if tag.flags & 2:  # bytes: the whole stream, this frame included
        frame[position : position + 4] = size.to_bytes(4, "big")
        position += 4
    if tag.flags & 4:  # TOC: 100 byte offsets in 256ths of the stream
        frame[position : position + 100] = toc
    if tag.lame is not None:
        lame = tag.lame
        frame[lame + 21 : lame + 24] = (tag.delay << 12 | padding).to_bytes(3, "big")
        frame[lame + 28 : lame + 32] = size.to_bytes(4, "big")  # music length
        # The music CRC (lame + 32) is left as the source had it: see the module notes.
        frame[lame + 34 : lame + 36] = crc16_arc(frame[: lame + 34]).to_bytes(2, "big")
    return bytes(frame)


def _faded_side_info(head: bytes, index: int, plan: _Plan) -> bytes:
    """The header, CRC and side information of frame *index* (*head*), with each granule's
    global_gain lowered as *plan* says and the CRC recomputed."""
    header = parse_header(head)
    assert header is not None  # scanned before
    start = 6 if header.protected else 4
    size = header.side_info * 8
    bits = int.from_bytes(head[start : start + header.side_info], "big")
    channels = 1 if header.mono else 2
    for granule in range(plan.granules):
        steps = plan.steps(index * plan.granules + granule)
        for channel in range(channels):
            if header.mpeg1:  # main_data_begin 9, private 5/3, scfsi 4 per channel; 59 each
                at = (18 if header.mono else 20) + (granule * channels + channel) * 59
            else:  # main_data_begin 8, private 1/2; 63 bits each
                at = (9 if header.mono else 10) + channel * 63
            shift = size - (at + 21) - 8  # global_gain: after part2_3_length 12, big_values 9
            gain = bits >> shift & 0xFF
            lowered = 0 if steps is None else max(0, gain - steps)
            bits = bits & ~(0xFF << shift) | lowered << shift
    side = bits.to_bytes(header.side_info, "big")
    if not header.protected:
        return head[:4] + side
    return head[:4] + crc16_frame(head[2:4] + side).to_bytes(2, "big") + side
