"""Reading MP3 streams for the fast path: Layer III frame headers, the Xing/Info frame and
its LAME tag, the ID3 tags around the frames, and MPEG audio's two CRC-16s. The fields read
are cited in :mod:`replicate_audio.audio.mp3`'s docstring, and beside the code below.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ._files import FastPathUnavailable

__all__ = [
    "DECODER_DELAY",
    "FrameHeader",
    "InfoTag",
    "Stream",
    "crc16_arc",
    "crc16_frame",
    "gapless_duration",
    "open_stream",
    "parse_header",
    "read_info_tag",
]

#: kbit/s by bitrate index 1-14: MPEG-1 Layer III, and MPEG-2/2.5 Layer III.
_BITRATES = {
    True: (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    False: (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
#: Sampling rates by version (3 MPEG-1, 2 MPEG-2, 0 MPEG-2.5) and rate index 0-2.
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
#: What a decoder adds after the encoder delay (FFmpeg skips delay + 528 + 1).
DECODER_DELAY = 529
_LAME_VERSIONS = (b"LAME", b"Lavc", b"Lavf")


@attrs.frozen
class FrameHeader:
    """What the 32-bit header of one Layer III frame says."""

    word: int
    mpeg1: bool
    sample_rate: int
    mono: bool
    length: int

    @property
    def protected(self) -> bool:
        """A CRC-16 follows the header (protection bit 0)."""
        return not self.word >> 16 & 1

    @property
    def samples(self) -> int:
        return 1152 if self.mpeg1 else 576

    @property
    def side_info(self) -> int:
        """Bytes of side information."""
        return (17 if self.mono else 32) if self.mpeg1 else (9 if self.mono else 17)

    @property
    def stream_key(self) -> tuple[int, bool]:
        """What every frame of one stream shares: sync, version, layer, rate; mono or not."""
        return self.word & 0xFFFE0C00, self.mono


def parse_header(data: bytes) -> FrameHeader | None:
    """The Layer III frame header at the start of *data*, or None if there is none (or it
    is free format, which this path does not serve)."""
    if len(data) < 4:
        return None
    word = int.from_bytes(data[:4], "big")
    version, layer = word >> 19 & 3, word >> 17 & 3
    bitrate_index, rate_index = word >> 12 & 15, word >> 10 & 3
    if word >> 21 != 0x7FF or version == 1 or layer != 1:
        return None
    if bitrate_index in (0, 15) or rate_index == 3:
        return None
    mpeg1, rate = version == 3, _RATES[version][rate_index]
    bitrate = _BITRATES[mpeg1][bitrate_index - 1] * 1000
    length = (144 if mpeg1 else 72) * bitrate // rate + (word >> 9 & 1)
    return FrameHeader(word, mpeg1, rate, word >> 6 & 3 == 3, length)


@attrs.frozen
class InfoTag:
    """The Xing/Info header (and LAME tag) in a stream's first frame."""

    at: int
    header: FrameHeader
    #: Offsets inside the frame of ``Xing``/``Info``, and of the LAME tag if there is one.
    xing: int
    flags: int
    frames: int | None
    lame: int | None
    delay: int
    padding: int

    @property
    def gapless(self) -> bool:
        """A decoder that reads it can tell the exact number of samples."""
        return self.lame is not None and self.frames is not None

    def samples(self) -> int | None:
        """The samples a gapless decoder plays, if it can tell."""
        if self.frames is None or self.lame is None:
            return None
        return self.frames * self.header.samples - self.delay - self.padding


def read_info_tag(frame: bytes, header: FrameHeader, at: int) -> InfoTag | None:
    """The Xing/Info header of the first *frame* (found at *at*), if it has one."""
    for xing in {4 + header.side_info, 4 + 2 * header.protected + header.side_info}:
        if frame[xing : xing + 4] in (b"Xing", b"Info"):
            break
    else:
        if frame[36:40] == b"VBRI":
            raise FastPathUnavailable("a Fraunhofer VBRI header, which this path cannot rewrite")
        return None
    flags = int.from_bytes(frame[xing + 4 : xing + 8], "big")
    position = xing + 8
    frames = int.from_bytes(frame[position : position + 4], "big") if flags & 1 else None
    position += 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4)
    position += 4 * bool(flags & 8)
    lame, delay, padding = None, 0, 0
    if frame[position : position + 4] in _LAME_VERSIONS and len(frame) >= position + 36:
        lame = position
        delay_padding = int.from_bytes(frame[lame + 21 : lame + 24], "big")
        delay, padding = delay_padding >> 12, delay_padding & 0xFFF
    return InfoTag(at, header, xing, flags, frames, lame, delay, padding)


@attrs.frozen
class Stream:
    """Where the frames of an MP3 file are, between its ID3 tags."""

    start: int
    end: int
    first: FrameHeader
    tag: InfoTag | None

    @property
    def audio_start(self) -> int:
        return self.start + (self.first.length if self.tag else 0)


def open_stream(fd: int, size: int) -> Stream:
    head = os.pread(fd, 10, 0)
    start = 0
    if head[:3] == b"ID3" and len(head) == 10:
        # ID3v2: "ID3", version 2 bytes, flags (0x10: a footer follows), size as 4 x 7 bits.
        if any(byte & 0x80 for byte in head[6:10]):
            raise FastPathUnavailable("an ID3v2 tag with a malformed size")
        start = 10 + sum(byte << (7 * (3 - n)) for n, byte in enumerate(head[6:10]))
        start += 10 if head[5] & 0x10 else 0
    # ID3v1: the last 128 bytes, starting "TAG".
    end = size - 128 if size >= start + 128 and os.pread(fd, 3, size - 128) == b"TAG" else size
    frame = os.pread(fd, 2881, start)  # the longest Layer III frame
    first = parse_header(frame)
    if first is None:
        raise FastPathUnavailable(f"no Layer III frame header at byte {start}")
    tag = read_info_tag(frame[: first.length], first, start)
    return Stream(start, end, first, tag)


def gapless_duration(path: Path) -> float | None:
    """Seconds a gapless decoder plays of the MP3 at *path*, from its Xing/LAME header; None
    if it has none (or is not an MP3 this module reads)."""
    with path.open("rb", buffering=0) as reader:
        try:
            stream = open_stream(reader.fileno(), os.fstat(reader.fileno()).st_size)
        except FastPathUnavailable:
            return None
    samples = stream.tag.samples() if stream.tag else None
    return None if samples is None else samples / stream.first.sample_rate


def crc16_frame(data: bytes) -> int:
    """MPEG audio's CRC-16: polynomial 0x8005, initial value 0xFFFF, most significant bit first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = (crc << 1 ^ 0x8005 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def crc16_arc(data: bytes | bytearray) -> int:
    """The LAME tag's CRC-16: polynomial 0x8005 reflected (0xA001), initial value 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = crc >> 1 ^ 0xA001 if crc & 1 else crc >> 1
    return crc
