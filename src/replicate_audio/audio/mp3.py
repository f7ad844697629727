"""The MP3 fast path (placeholder until the frame-exact cut lands)."""

from __future__ import annotations

from pathlib import Path

from ..storage.protocols import AudioInfo
from ._files import FastPathUnavailable


def gapless_duration(path: Path) -> float | None:
    """Not yet: None."""
    return None


def trim(source: Path, dest: Path, *, duration: float | None, fade_out: float) -> AudioInfo:
    """Not yet: always the PyAV path."""
    raise FastPathUnavailable("the MP3 fast path is not written yet")
