"""Jobs: one per prediction, and the small state machine that moves them forward only."""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

import attrs

from .config import ReplicateAudioConfig

__all__ = ["Job", "JobStatus", "can_apply_event", "can_transition", "status_for_prediction"]


class JobStatus(str, enum.Enum):
    """Where a job is. The last four are terminal.

    ``pending`` -> ``running`` -> ``received`` -> ``processing`` -> ``completed`` | ``dead``,
    and ``failed`` or ``canceled`` straight from ``pending`` or ``running``.
    """

    #: The prediction was created; nothing heard from Replicate yet.
    PENDING = "pending"
    #: Replicate reported the prediction starting or processing.
    RUNNING = "running"
    #: The prediction succeeded and is recorded durably; its audio waits to be processed.
    RECEIVED = "received"
    #: A worker is downloading, post-processing and storing the audio.
    PROCESSING = "processing"
    #: The audio is stored.
    COMPLETED = "completed"
    #: The prediction failed on Replicate.
    FAILED = "failed"
    #: The prediction was canceled.
    CANCELED = "canceled"
    #: Post-processing gave up after its retries; :func:`replay` can run it again.
    DEAD = "dead"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed, canceled and dead."""
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.DEAD})

_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.RUNNING, JobStatus.RECEIVED, JobStatus.FAILED, JobStatus.CANCELED}
    ),
    JobStatus.RUNNING: frozenset({JobStatus.RECEIVED, JobStatus.FAILED, JobStatus.CANCELED}),
    JobStatus.RECEIVED: frozenset({JobStatus.PROCESSING}),
    # processing -> processing is a worker re-claiming a job whose owner died;
    # processing -> received hands a job back for a later try.
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PROCESSING, JobStatus.RECEIVED, JobStatus.COMPLETED, JobStatus.DEAD}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
    # Only an explicit replay leaves a dead job, never a webhook.
    JobStatus.DEAD: frozenset({JobStatus.RECEIVED}),
}

_BY_PREDICTION_STATUS = {
    "starting": JobStatus.RUNNING,
    "processing": JobStatus.RUNNING,
    "succeeded": JobStatus.RECEIVED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELED,
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """Tell whether a job may move from *current* to *new*.

    Example:
        >>> can_transition(JobStatus.COMPLETED, JobStatus.RUNNING)
        False
    """
    return new in _TRANSITIONS[current]


def can_apply_event(current: JobStatus, new: JobStatus) -> bool:
    """Tell whether a delivery asking for *new* moves a job now in *current*.

    Deliveries only move jobs still waiting on Replicate (``pending``, ``running``): a late
    "succeeded" must not pull a job back from its worker, nor revive a dead one, although
    :func:`can_transition` allows both moves to the worker and to :func:`replay`.

    Example:
        >>> can_apply_event(JobStatus.PROCESSING, JobStatus.RECEIVED)
        False
    """
    return current in (JobStatus.PENDING, JobStatus.RUNNING) and can_transition(current, new)


def status_for_prediction(prediction_status: str) -> JobStatus:
    """The job status a webhook with this prediction status moves a job to.

    Example:
        >>> status_for_prediction("succeeded")
        <JobStatus.RECEIVED: 'received'>
    """
    return _BY_PREDICTION_STATUS[prediction_status]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


@attrs.frozen(kw_only=True)
class Job:
    """One audio generation: a prediction on Replicate and what became of its output.

    ``id`` is the prediction id. ``prediction`` holds the last prediction payload recorded
    (the output URLs come from it); ``config`` what was asked for, so the job can be run again.

    Example:
        >>> job = Job(id="p1", content_type="sound_effect", content_id="7")
        >>> job.status, job.is_terminal
        (<JobStatus.PENDING: 'pending'>, False)
    """

    id: str
    content_type: str
    content_id: str
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    error: str | None = None
    config: ReplicateAudioConfig | None = None
    prediction: dict[str, Any] | None = attrs.field(default=None, eq=False, hash=False)
    created_at: datetime = attrs.field(factory=utcnow)
    updated_at: datetime = attrs.field(factory=utcnow)

    @property
    def is_terminal(self) -> bool:
        """True once nothing more will happen to the job without a replay."""
        return self.status.is_terminal

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: what the jobs endpoint answers."""
        return {
            "id": self.id,
            "content_type": self.content_type,
            "content_id": self.content_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "error": self.error,
            "config": self.config.to_dict() if self.config else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
