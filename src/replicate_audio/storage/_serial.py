"""The job-store rules for backends that run each read-decide-write under one exclusive lock."""

from __future__ import annotations

import abc
from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Any

import attrs

from ..errors import JobNotFoundError
from ..jobs import Job, JobStatus, can_transition, utcnow
from ._records import event_sources, event_status, stale_cutoff
from .protocols import RecordedEvent

__all__ = ["SerialJobStore"]


class SerialJobStore(abc.ABC):
    """Implements the write side of :class:`~replicate_audio.storage.JobStore` once.

    A subclass provides :meth:`_exclusive` (a lock, or ``BEGIN IMMEDIATE``: everything inside
    happens at once or not at all, and no other writer runs meanwhile) and row primitives.
    """

    @abc.abstractmethod
    def _exclusive(self) -> AbstractContextManager[None]:
        """A write transaction; an exception inside rolls it back."""

    @abc.abstractmethod
    def _load_job(self, job_id: str) -> Job | None:
        """The job row, read inside :meth:`_exclusive`."""

    @abc.abstractmethod
    def _save_job(self, job: Job) -> None:
        """Insert or replace the job row, inside :meth:`_exclusive`."""

    @abc.abstractmethod
    def _add_delivery(self, webhook_id: str, job_id: str) -> bool:
        """Remember *webhook_id*, inside :meth:`_exclusive`; False if it was seen before."""

    def create_job(self, job: Job) -> Job:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        with self._exclusive():
            existing = self._load_job(job.id)
            if existing is not None:
                return existing
            self._save_job(job)
            return job

    def record_event(
        self, webhook_id: str, job_id: str, prediction: dict[str, Any]
    ) -> RecordedEvent:
        """Record one delivery, once per *webhook_id*, and move the job forward if it may.

        Raises:
            JobNotFoundError: no job has *job_id*; the delivery is not remembered, so a
                retry after the job is created is recorded.
            InvalidPayloadError: the prediction has no known status.
        """
        new = event_status(prediction)
        with self._exclusive():
            job = self._load_job(job_id)
            if job is None:
                raise JobNotFoundError(job_id)
            if not self._add_delivery(webhook_id, job_id):
                return RecordedEvent(job=job, duplicate=True, changed=False)
            if job.status not in event_sources(new):
                return RecordedEvent(job=job, duplicate=False, changed=False)
            job = attrs.evolve(job, status=new, prediction=prediction, updated_at=utcnow())
            self._save_job(job)
            return RecordedEvent(job=job, duplicate=False, changed=True)

    def transition(
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
        and (given *attempt*) while its ``attempts`` equal *attempt*.

        Returns the updated job, or None when the compare-and-set lost (or no such job).
        """
        with self._exclusive():
            job = self._load_job(job_id)
            if job is None or job.status not in expected or not can_transition(job.status, new):
                return None
            if attempt is not None and job.attempts != attempt:
                return None
            changes: dict[str, Any] = {"status": new, "error": error, "updated_at": utcnow()}
            if prediction is not None:
                changes["prediction"] = prediction
            job = attrs.evolve(job, **changes)
            self._save_job(job)
            return job

    def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """Take a ``received`` job, or a ``processing`` one idle for *stale_after* seconds.

        Returns the claimed job (``attempts`` incremented), or None if another worker has it.
        """
        with self._exclusive():
            job = self._load_job(job_id)
            if job is None:
                return None
            now = utcnow()
            stale = job.status is JobStatus.PROCESSING and job.updated_at < stale_cutoff(
                now, stale_after
            )
            if job.status is not JobStatus.RECEIVED and not stale:
                return None
            job = attrs.evolve(
                job, status=JobStatus.PROCESSING, attempts=job.attempts + 1, updated_at=now
            )
            self._save_job(job)
            return job
