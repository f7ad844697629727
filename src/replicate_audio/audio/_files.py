"""What the fast paths and the PyAV path share: one error for bad input, results written
aside and moved over *dest*, and byte ranges copied by the kernel."""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import av

from ..errors import AudioProcessingError

_CHUNK = 1 << 20


class FastPathUnavailable(Exception):
    """A fast path cannot serve this stream; *reason* says why, and the PyAV path takes over.

    It never escapes the package: :func:`replicate_audio.audio.trim` catches it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextlib.contextmanager
def failures(action: str) -> Iterator[None]:
    """Turn whatever PyAV or the filesystem raises into one AudioProcessingError."""
    try:
        yield
    except (av.FFmpegError, OSError, ValueError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise AudioProcessingError(f"cannot {action}: {reason}") from error


@contextlib.contextmanager
def replacing(dest: Path) -> Iterator[Path]:
    """A temporary path beside *dest*, moved over *dest* if the block succeeds, else removed,
    so *dest* is never partial."""
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        yield partial
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def copy_range(source: int, dest: int, offset: int, count: int) -> None:
    """Append *count* bytes of the file *source* from *offset* at *dest*'s position.

    ``copy_file_range`` lets the kernel copy (no bytes through Python); where it is missing
    or refuses (another filesystem), bounded chunks are read and written instead.
    """
    while count > 0:
        try:
            copied = os.copy_file_range(source, dest, min(count, 1 << 30), offset)
        except (AttributeError, OSError) as error:
            if isinstance(error, OSError) and error.errno not in _NO_KERNEL_COPY:
                raise
            _copy_by_chunks(source, dest, offset, count)
            return
        if copied == 0:
            raise FastPathUnavailable("the file ends before the bytes its header promises")
        offset, count = offset + copied, count - copied


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


def _copy_by_chunks(source: int, dest: int, offset: int, count: int) -> None:
    while count > 0:
        chunk = os.pread(source, min(count, _CHUNK), offset)
        if not chunk:
            raise FastPathUnavailable("the file ends before the bytes its header promises")
        os.write(dest, chunk)
        offset, count = offset + len(chunk), count - len(chunk)
