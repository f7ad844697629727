"""The simulator's sync mode: ``Prefer: wait`` holds a create until the model finishes."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from ._predictions import Problem

#: "Synchronous predictions hold the request open for a specified duration, which defaults
#: to 60 seconds" (Create a prediction, sync mode); ``wait=n``: "n is a number of seconds
#: between 1 and 60" (HTTP reference, ``Prefer``).
DEFAULT_WAIT = 60.0
MAX_WAIT = 60
_WAIT = re.compile(r"\s*wait(?:\s*=\s*(\d+))?\s*", re.IGNORECASE)
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def requested_wait(headers: dict[str, str]) -> float | None:
    """The seconds a create asks to be held (``Prefer: wait`` or ``wait=n``), or ``None``.

    Raises:
        Problem: ``wait=n`` with n outside 1..60 (422; Replicate documents no answer).

    Example:
        >>> requested_wait({"Prefer": "wait=5"}), requested_wait({"prefer": "wait"})
        (5.0, 60.0)
    """
    value = next((v for k, v in headers.items() if k.lower() == "prefer"), None)
    if value is None:
        return None
    for preference in value.split(","):
        match = _WAIT.fullmatch(preference)
        if match is None:
            continue
        if match.group(1) is None:
            return DEFAULT_WAIT
        seconds = int(match.group(1))
        if not 1 <= seconds <= MAX_WAIT:
            detail = f"- Prefer: wait={seconds}: n must be a number of seconds between 1 and 60"
            raise Problem(422, "Invalid Prefer header", detail)
        return float(seconds)
    return None


def data_uri(path: Path, format: str) -> str:
    """The file at *path* as a ``data:`` URI with its media type, base64 encoded."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{MEDIA_TYPES.get(format, 'application/octet-stream')};base64,{encoded}"


def inline_files(output: Any, prefix: str, uri: str) -> Any:
    """*output* with every URL under *prefix* (the simulator's file host) replaced by *uri*."""
    if isinstance(output, str):
        return uri if output.startswith(prefix) else output
    if isinstance(output, list):
        return [inline_files(item, prefix, uri) for item in output]
    if isinstance(output, dict):
        return {key: inline_files(item, prefix, uri) for key, item in output.items()}
    return output
