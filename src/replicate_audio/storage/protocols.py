"""The storage plug points: a job store, an audio store and a result log, as small Protocols.

A backend may implement them with plain methods (run on a worker thread by the core) or
with ``async def`` methods (awaited directly); :func:`replicate_audio.storage.call` hides
the difference.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from ..jobs import Job, JobStatus, utcnow

__all__ = [
    "AudioInfo",
    "AudioStore",
    "LogEntry",
    "RecordedEvent",
    "ResultLog",
    "Store",
    "StoredAudio",
    "JobStore",
]


@attrs.frozen
class AudioInfo:
    """What probing an audio file tells: container format, duration, size and layout."""

    format: str
    duration: float
    size: int
    sample_rate: int
    channels: int


@attrs.frozen
class StoredAudio:
    """Audio read back from an audio store.

    Example:
        >>> StoredAudio("sound_effect", "1", "p1", "wav", 0.5, 3, b"RIF").to_base64()
        'UklG'
    """

    content_type: str
    content_id: str
    job_id: str
    format: str
    duration: float
    size: int
    data: bytes = attrs.field(repr=False)

    def to_base64(self) -> str:
        """The audio as base64 text, for apps that keep an ``audio_data_b64`` column."""
        return base64.b64encode(self.data).decode("ascii")


@attrs.frozen
class LogEntry:
    """One line of the result log: what became of a job (the seed app's ``crud.create_log``)."""

    job_id: str
    content_type: str
    content_id: str
    status: JobStatus
    message: str
    duration: float | None = None
    size: int | None = None
    created_at: datetime = attrs.field(factory=utcnow)


@attrs.frozen
class RecordedEvent:
    """What :meth:`JobStore.record_event` did with a delivery."""

    #: The job after the event.
    job: Job
    #: True when this ``webhook-id`` had been recorded before; nothing was changed.
    duplicate: bool
    #: True when the event moved the job to a new status.
    changed: bool


@runtime_checkable
class JobStore(Protocol):
    """Durable job state with compare-and-set transitions."""

    def create_job(self, job: Job) -> Job | Awaitable[Job]:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        ...

    def get_job(self, job_id: str) -> Job | Awaitable[Job | None] | None:
        """The job with this id, or None."""
        ...

    def record_event(
        self, webhook_id: str, job_id: str, prediction: dict[str, Any]
    ) -> RecordedEvent | Awaitable[RecordedEvent]:
        """Record one delivery, once per *webhook_id*, and move the job forward if it may.

        In one transaction: a *webhook_id* seen before changes nothing (``duplicate``);
        otherwise the job moves to ``status_for_prediction(prediction["status"])`` when
        :func:`~replicate_audio.jobs.can_transition` allows, storing *prediction*.

        Raises:
            JobNotFoundError: no job has *job_id*.
        """
        ...

    def transition(
        self,
        job_id: str,
        *,
        expected: Collection[JobStatus],
        new: JobStatus,
        error: str | None = None,
        prediction: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Job | Awaitable[Job | None] | None:
        """Move the job to *new* if its status is in *expected* and the move is allowed.

        Sets ``error`` (and ``prediction`` when given). With *attempt*, moves it only while
        its ``attempts`` still equal *attempt*: a worker whose claim another took over (its
        lease ran out) can no longer move the job. Returns the updated job, or None when the
        compare-and-set lost.
        """
        ...

    def claim_job(self, job_id: str, *, stale_after: float) -> Job | Awaitable[Job | None] | None:
        """Take a job for processing: ``received`` -> ``processing``, or re-take one left in
        ``processing`` for more than *stale_after* seconds (its worker died).

        Increments ``attempts``. Returns the claimed job, or None if another worker has it.
        """
        ...

    def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job] | Awaitable[list[Job]]:
        """Jobs in any of *statuses* last updated before *updated_before*, oldest first."""
        ...


@runtime_checkable
class AudioStore(Protocol):
    """Keeps the finished audio of each piece of content."""

    def save_audio(
        self, *, content_type: str, content_id: str, job_id: str, source: Path, info: AudioInfo
    ) -> Awaitable[None] | None:
        """Store the audio file at *source* for this content, replacing any earlier audio.

        Saving the same content twice leaves one copy (a retried job may save again).
        """
        ...

    def get_audio(
        self, content_type: str, content_id: str
    ) -> StoredAudio | Awaitable[StoredAudio | None] | None:
        """The stored audio for this content, or None."""
        ...


@runtime_checkable
class ResultLog(Protocol):
    """An append-only record of outcomes."""

    def log_result(self, entry: LogEntry) -> Awaitable[None] | None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        ...

    def list_logs(self, job_id: str | None = None) -> list[LogEntry] | Awaitable[list[LogEntry]]:
        """Entries, oldest first, for one job or all."""
        ...


@runtime_checkable
class Store(JobStore, AudioStore, ResultLog, Protocol):
    """All three storage roles in one object, as the built-in stores provide them."""
