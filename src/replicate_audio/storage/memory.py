"""An in-memory store for tests and local experiments: dicts under a lock, gone with the process."""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import attrs

from ..jobs import Job, JobStatus
from ._records import as_utc, read_source
from ._serial import SerialJobStore
from .protocols import AudioInfo, Delivery, LogEntry, RecordedEvent, StoredAudio

__all__ = ["MemoryStore"]


class MemoryStore(SerialJobStore):
    """Jobs, audio and the result log in dictionaries, safe to share between threads.

    Nothing survives the process, and other processes cannot see it: use it in tests.
    Every step takes a lock for microseconds, so the methods run on the event loop itself.

    Example:
        >>> import anyio
        >>> from replicate_audio.jobs import Job
        >>> store = MemoryStore()
        >>> job = Job(id="j1", content_type="sound_effect", content_id="7")
        >>> anyio.run(store.create_job, job).status
        <JobStatus.CREATING: 'creating'>
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_prediction: dict[str, str] = {}
        self._deliveries: set[str] = set()
        self._audio: dict[tuple[str, str], tuple[Job, StoredAudio]] = {}
        # Named files (stems): one job's per content.
        self._files: dict[tuple[str, str], tuple[Job, dict[str, StoredAudio]]] = {}
        self._logs: list[LogEntry] = []
        self._logged: set[tuple[str, JobStatus]] = set()

    # Every step below mutates only after its last check, so an exception inside leaves
    # nothing half done and there is nothing to roll back.

    def _load_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _load_by_prediction(self, prediction_id: str) -> Job | None:
        job_id = self._by_prediction.get(prediction_id)
        return self._jobs.get(job_id) if job_id is not None else None

    def _save_job(self, job: Job) -> None:
        # A private copy, so a caller mutating its prediction dict cannot change the store.
        self._jobs[job.id] = attrs.evolve(job, prediction=copy.deepcopy(job.prediction))
        if job.prediction_id is not None:
            self._by_prediction[job.prediction_id] = job.id

    def _add_delivery(self, webhook_id: str, job_id: str) -> bool:
        if webhook_id in self._deliveries:
            return False
        self._deliveries.add(webhook_id)
        return True

    async def create_job(self, job: Job) -> Job:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        with self._lock:
            return self._create_step(job)

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or whose prediction has this id."""
        with self._lock:
            return self._find(job_id)

    async def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        """Record what the create answered (see :meth:`JobStore.attach_prediction`)."""
        with self._lock:
            return self._attach_step(job_id, prediction)

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        """Record one delivery, once per ``webhook_id`` (see :meth:`JobStore.record_delivery`)."""
        with self._lock:
            return self._deliver_step(delivery)

    async def transition(
        self,
        job_id: str,
        *,
        expected: Collection[JobStatus],
        new: JobStatus,
        error: str | None = None,
        prediction: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Job | None:
        """Move the job to *new* if its status is in *expected* and the move is allowed,
        and (given *attempt*) while its ``attempts`` equal *attempt*."""
        with self._lock:
            return self._transition_step(job_id, expected, new, error, prediction, attempt)

    async def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """Take a ``received`` job, or a ``processing`` one idle for *stale_after* seconds."""
        with self._lock:
            return self._claim_step(job_id, stale_after)

    async def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs in any of *statuses* last updated before *updated_before*, oldest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        if statuses is not None:
            wanted = set(statuses)
            jobs = [job for job in jobs if job.status in wanted]
        if updated_before is not None:
            cutoff = as_utc(updated_before)
            jobs = [job for job in jobs if job.updated_at < cutoff]
        jobs.sort(key=lambda job: (job.updated_at, job.id))
        return jobs[: max(limit, 0)]

    async def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool:
        """Keep the bytes of *source* for *job*'s content (or as its file *name*), unless
        a newer job's are kept."""
        data = await anyio.to_thread.run_sync(read_source, source)
        audio = StoredAudio(
            job.content_type, job.content_id, job.id, info.format, info.duration, len(data),
            data, name,
        )  # fmt: skip
        key = (job.content_type, job.content_id)
        with self._lock:
            if name is None:
                current = self._audio.get(key)
                if current is not None and current[0].is_newer_than(job):
                    return False
                self._audio[key] = (job, audio)
                return True
            owner, files = self._files.get(key, (job, {}))
            if owner.is_newer_than(job):
                return False
            if owner.id != job.id:
                files = {}  # an older job's files make way for the newer job's
            self._files[key] = (job, {**files, name: audio})
            return True

    async def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """The stored audio for this content (or its file *name*), or None."""
        key = (content_type, content_id)
        with self._lock:
            if name is None:
                current = self._audio.get(key)
                return current[1] if current is not None else None
            return self._files.get(key, (None, {}))[1].get(name)

    async def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        with self._lock:
            if (entry.job_id, entry.status) in self._logged:
                return
            self._logged.add((entry.job_id, entry.status))
            self._logs.append(entry)

    async def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        with self._lock:
            entries = [e for e in self._logs if job_id is None or e.job_id == job_id]
        return sorted(entries, key=lambda entry: as_utc(entry.created_at))
