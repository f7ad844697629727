"""The job-store rules for backends that run each read-decide-write as one exclusive step.

The rules are plain functions over a few row primitives; the backend decides how a step is
made exclusive (a lock for :class:`MemoryStore`, one writer thread and a transaction for
:class:`SQLiteStore`).
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from typing import Any

import attrs

from ..jobs import Job, JobStatus, can_apply_event, can_transition, utcnow
from ._records import event_status, stale_cutoff
from .protocols import Delivery, DeliveryOutcome, RecordedEvent

__all__ = ["SerialJobStore"]


class SerialJobStore(abc.ABC):
    """Implements the write side of :class:`~replicate_audio.storage.JobStore` once, as
    steps that the subclass runs exclusively (nothing else writes meanwhile, and an
    exception inside leaves nothing changed)."""

    @abc.abstractmethod
    def _load_job(self, job_id: str) -> Job | None:
        """The job row with this id."""

    @abc.abstractmethod
    def _load_by_prediction(self, prediction_id: str) -> Job | None:
        """The job row whose prediction has this id."""

    @abc.abstractmethod
    def _save_job(self, job: Job) -> None:
        """Insert or replace the job row."""

    @abc.abstractmethod
    def _add_delivery(self, webhook_id: str, job_id: str) -> bool:
        """Remember *webhook_id*; False if it was seen before."""

    def _find(self, reference: str) -> Job | None:
        """The job with this id, else the one whose prediction has this id."""
        return self._load_job(reference) or self._load_by_prediction(reference)

    def _create_step(self, job: Job) -> Job:
        existing = self._load_job(job.id)
        if existing is not None:
            return existing
        self._save_job(job)
        return job

    def _owner_of(self, prediction_id: str, job: Job) -> bool:
        """Whether *job* is, or may become, the job of this prediction."""
        if job.prediction_id is not None:
            return job.prediction_id == prediction_id
        other = self._load_by_prediction(prediction_id)
        return other is None or other.id == job.id

    def _attach_step(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        job = self._load_job(job_id)
        prediction_id = prediction.get("id")
        if job is None or not isinstance(prediction_id, str):
            return None
        if not self._owner_of(prediction_id, job):
            return None
        changes: dict[str, Any] = {}
        if job.prediction_id is None:
            changes["prediction_id"] = prediction_id
        if job.status is JobStatus.CREATING:
            changes.update(status=JobStatus.PENDING, prediction=prediction)
        if not changes:
            return job  # a delivery outran the create and recorded more than it knows
        job = attrs.evolve(job, **changes, updated_at=utcnow())
        self._save_job(job)
        return job

    def _deliver_step(self, delivery: Delivery) -> RecordedEvent:
        prediction_id = delivery.prediction_id
        if delivery.job_id is not None:
            job = self._load_job(delivery.job_id)
        else:  # a URL without a job id: a job recorded before job ids, or a direct call
            job = self._load_by_prediction(prediction_id)
        if (
            job is None
            or not self._owner_of(prediction_id, job)
            or (delivery.content_type is not None and delivery.content_type != job.content_type)
            or (delivery.content_id is not None and delivery.content_id != job.content_id)
        ):
            return RecordedEvent(DeliveryOutcome.NOT_OURS, None)
        if not self._add_delivery(delivery.webhook_id, job.id):
            return RecordedEvent(DeliveryOutcome.DUPLICATE, job)
        new = event_status(delivery.prediction)
        changes: dict[str, Any] = {}
        if job.prediction_id is None:
            changes["prediction_id"] = prediction_id
        if new is not None and can_apply_event(job.status, new):
            changes.update(status=new, prediction=delivery.prediction)
        if not changes:
            return RecordedEvent(DeliveryOutcome.RECORDED, job)
        job = attrs.evolve(job, **changes, updated_at=utcnow())
        self._save_job(job)
        return RecordedEvent(DeliveryOutcome.RECORDED, job, changed="status" in changes)

    def _transition_step(  # noqa: PLR0917 - the protocol's arguments, in order
        self,
        job_id: str,
        expected: Collection[JobStatus],
        new: JobStatus,
        error: str | None,
        prediction: dict[str, Any] | None,
        attempt: int | None,
    ) -> Job | None:
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

    def _claim_step(self, job_id: str, stale_after: float) -> Job | None:
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
