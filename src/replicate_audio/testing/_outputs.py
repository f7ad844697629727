"""The simulator's output files: real audio synthesised once per (duration, format), and faults."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import attrs

from ._predictions import SimulatedPrediction

_GONE = {"title": "Gone", "detail": "data_removed: the output has expired", "status": 410}
_NOT_FOUND = {"title": "Not found", "detail": "No such file.", "status": 404}
_UNAVAILABLE = {"title": "Service unavailable", "detail": "Try again.", "status": 503}


@attrs.frozen
class DownloadPlan:
    """How to answer one download: the status, the file, and the fault to apply."""

    status: int
    format: str = ""
    file: Path | None = None
    fault: str | None = None
    stall: float = 0.0
    body: dict[str, Any] | None = None


class OutputFiles:
    """Synthesises each (duration, format) once into a temporary directory it deletes on close."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="replicate-sim-"))
        self._lock = threading.Lock()
        self._files: dict[tuple[float, str], Path] = {}
        self._making: dict[tuple[float, str], threading.Lock] = {}

    def audio(self, duration: float, format: str) -> Path:
        """The path of a file of *duration* seconds in *format*, made on first use."""
        from ..audio import synthesize

        key = (round(duration, 3), format)
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            if key not in self._files:
                path = self._dir / f"{key[0]:g}s.{format}"
                synthesize(path, duration=key[0], format=format)
                self._files[key] = path
            return self._files[key]

    def plan(self, prediction: SimulatedPrediction | None, name: str, lock: Any) -> DownloadPlan:
        """Decide the answer to a download of *name*, counting it against the faults.

        Faults apply in turn: the first ``download_errors`` tries get 503, the next
        ``truncate_downloads`` a half body, the next ``slow_downloads`` a stall.
        """
        with lock:
            if prediction is None or prediction.status != "succeeded":
                return DownloadPlan(404, body=_NOT_FOUND)
            if not name.endswith("." + prediction.output_format):
                return DownloadPlan(404, body=_NOT_FOUND)
            faults = prediction.faults
            prediction.downloads += 1
            count = prediction.downloads
            removed = prediction.removed()
            duration, format = prediction.duration, prediction.output_format
        if faults.expired:
            return DownloadPlan(410, fault="expired", body=_GONE)
        if removed:
            return DownloadPlan(410, body=_GONE)
        if count <= faults.download_errors:
            return DownloadPlan(503, fault="error", body=_UNAVAILABLE)
        count -= faults.download_errors
        fault = None
        if count <= faults.truncate_downloads:
            fault = "truncated"
        elif count - faults.truncate_downloads <= faults.slow_downloads:
            fault = "slow"
        return DownloadPlan(
            200,
            format=format,
            file=self.audio(duration, format),
            fault=fault,
            stall=faults.slow_download_seconds,
        )

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
