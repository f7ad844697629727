"""The simulator's predictions: create checks, the lifecycle, and the JSON Replicate sends."""

from __future__ import annotations

import base64
import datetime
import math
import os
import threading
import time
from typing import Any

import attrs

from ..jobs import TERMINAL_PREDICTION_STATUSES
from .faults import Faults, ModelSpec

# The one home of the status sets: the simulator uses the library's own.
TERMINAL = TERMINAL_PREDICTION_STATUSES
FORMATS = ("mp3", "wav")
MAX_SECONDS = 600.0


class Problem(Exception):
    """An error answer in Replicate's problem-details shape."""

    def __init__(
        self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        #: Extra response headers (``Retry-After`` of a 429).
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"title": self.title, "detail": self.detail, "status": self.status}


NOT_FOUND = ("Not found", "The requested resource could not be found.")
UNAUTHENTICATED = ("Unauthenticated", "You did not pass a valid authentication token")


def new_prediction_id() -> str:
    """A Replicate-like id: 26 characters of lowercase base32."""
    return base64.b32encode(os.urandom(20)).decode("ascii").lower()[:26]


def _stamp(moment: float | None) -> str | None:
    if moment is None:
        return None
    when = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


@attrs.define
class SimulatedPrediction:
    """One prediction's mutable state, guarded by the book's lock."""

    id: str
    model: ModelSpec
    version: str
    input: dict[str, Any]
    webhook: str | None
    events: frozenset[str]
    faults: Faults
    duration: float
    output_format: str
    created_at: float
    status: str = "starting"
    started_at: float | None = None
    completed_at: float | None = None
    output: Any = None
    error: str | None = None
    logs: str = ""
    downloads: int = 0
    # The deployment it was created through, if any.
    deployment: str | None = None
    # When its Cancel-After deadline passes (seconds since the epoch), if it has one.
    deadline: float | None = None
    # Seconds from completion until the input, output and logs are removed.
    retention: float = math.inf
    # When the last webhook of this prediction was sent (time.monotonic), for the throttle.
    last_sent: float | None = None
    # Set once the first attempt of the completed webhook has finished, or at once when
    # none will be sent (no webhook, filtered out, dropped).
    terminal_attempted: threading.Event = attrs.field(factory=threading.Event, eq=False, repr=False)
    # Set when it reaches a terminal status (sync mode waits on it).
    finished: threading.Event = attrs.field(factory=threading.Event, eq=False, repr=False)

    def removed(self) -> bool:
        """Whether its data is gone: the retention time has passed since it completed, or
        the expired fault says so (once it has finished)."""
        if self.status not in TERMINAL or self.completed_at is None:
            return False
        return self.faults.expired or time.time() >= self.completed_at + self.retention

    def to_json(self, base_url: str, *, live: bool = False) -> dict[str, Any]:
        """The prediction as the API shows it; *live* for a webhook body, which is sent as
        things happen, before any removal."""
        api = f"{base_url}/v1/predictions/{self.id}"
        removed = not live and self.removed()
        metrics: dict[str, float] = {}
        if self.started_at is not None and self.completed_at is not None:
            metrics["predict_time"] = round(self.completed_at - self.started_at, 6)
            metrics["total_time"] = round(self.completed_at - self.created_at, 6)
        shown: dict[str, Any] = {
            "id": self.id,
            "model": self.model.name,
            "version": self.version,
            "input": {} if removed else self.input,
            "logs": None if removed else self.logs,
            "output": None if removed else self.output,
            "data_removed": removed,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": _stamp(self.created_at),
            "started_at": _stamp(self.started_at),
            "completed_at": _stamp(self.completed_at),
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": f"{base_url}/p/{self.id}"},
            "metrics": metrics,
        }
        if self.deployment is not None:
            shown["deployment"] = self.deployment
        if self.deadline is not None:
            shown["deadline"] = _stamp(self.deadline)
        return shown


def input_seconds(value: Any, key: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_SECONDS
    ):
        raise Problem(
            422, "Input validation failed", f"- input.{key}: must be a number in (0, {MAX_SECONDS}]"
        )
    return float(value)
