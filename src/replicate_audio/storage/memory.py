"""An in-memory store for tests and local experiments: dicts under a lock, gone with the process."""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import attrs

from ..jobs import Job, JobStatus
from ._records import as_utc, read_source
from ._serial import SerialJobStore
from .protocols import AudioInfo, LogEntry, StoredAudio

__all__ = ["MemoryStore"]


class MemoryStore(SerialJobStore):
    """Jobs, audio and the result log in dictionaries, safe to share between threads.

    Nothing survives the process, and other processes cannot see it: use it in tests.

    Example:
        >>> from replicate_audio.jobs import Job
        >>> store = MemoryStore()
        >>> store.create_job(Job(id="p1", content_type="sound_effect", content_id="7")).status
        <JobStatus.PENDING: 'pending'>
        >>> store.record_event("msg_1", "p1", {"id": "p1", "status": "succeeded"}).changed
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._deliveries: set[str] = set()
        self._audio: dict[tuple[str, str], StoredAudio] = {}
        self._logs: list[LogEntry] = []
        self._logged: set[tuple[str, JobStatus]] = set()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        # Every check-and-write below mutates only after its last check, so an
        # exception inside leaves nothing half done and there is nothing to roll back.
        with self._lock:
            yield

    def _load_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def _save_job(self, job: Job) -> None:
        # A private copy, so a caller mutating its prediction dict cannot change the store.
        self._jobs[job.id] = attrs.evolve(job, prediction=copy.deepcopy(job.prediction))

    def _add_delivery(self, webhook_id: str, job_id: str) -> bool:
        if webhook_id in self._deliveries:
            return False
        self._deliveries.add(webhook_id)
        return True

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._lock:
            return self._jobs.get(job_id)

    def list_jobs(
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

    def save_audio(
        self, *, content_type: str, content_id: str, job_id: str, source: Path, info: AudioInfo
    ) -> None:
        """Keep the bytes of *source* for this content, replacing any earlier audio."""
        data = read_source(source)
        audio = StoredAudio(
            content_type, content_id, job_id, info.format, info.duration, len(data), data
        )
        with self._lock:
            self._audio[content_type, content_id] = audio

    def get_audio(self, content_type: str, content_id: str) -> StoredAudio | None:
        """The stored audio for this content, or None."""
        with self._lock:
            return self._audio.get((content_type, content_id))

    def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        with self._lock:
            if (entry.job_id, entry.status) in self._logged:
                return
            self._logged.add((entry.job_id, entry.status))
            self._logs.append(entry)

    def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        with self._lock:
            entries = [e for e in self._logs if job_id is None or e.job_id == job_id]
        return sorted(entries, key=lambda entry: as_utc(entry.created_at))
