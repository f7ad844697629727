"""Jobs, Replicate's prediction statuses, and the small state machine that moves jobs forward.

The one home of every status set: webhook parsing, the stores, the adapters' OpenAPI schema
and the simulator import them from here.
"""

from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone
from typing import Any

import attrs

from .config import ReplicateAudioConfig

__all__ = [
    "PREDICTION_STATUSES",
    "TERMINAL_PREDICTION_STATUSES",
    "Job",
    "JobStatus",
    "can_apply_event",
    "can_transition",
    "new_job_id",
    "status_for_prediction",
]

#: Every status Replicate documents for a prediction. ``aborted``: its ``Cancel-After``
#: deadline passed before it started (Replicate does not charge for it).
PREDICTION_STATUSES: frozenset[str] = frozenset(
    {"starting", "processing", "succeeded", "failed", "canceled", "aborted"}
)
#: The statuses after which a prediction never changes again.
TERMINAL_PREDICTION_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "canceled", "aborted"}
)


class JobStatus(str, enum.Enum):
    """Where a job is. The last five are terminal.

    ``creating`` -> ``pending`` -> ``running`` -> ``received`` -> ``processing`` ->
    ``completed`` | ``dead``, and ``failed``, ``canceled`` or ``aborted`` from any of the
    first three. A delivery may skip steps (a ``completed`` webhook that outran the create).
    """

    #: Recorded; its prediction is being created (Replicate has not answered yet).
    CREATING = "creating"
    #: The prediction was created; nothing heard from Replicate since.
    PENDING = "pending"
    #: Replicate reported the prediction starting or processing.
    RUNNING = "running"
    #: The prediction succeeded and is recorded durably; its audio waits to be processed.
    RECEIVED = "received"
    #: A worker is downloading, post-processing and storing the audio.
    PROCESSING = "processing"
    #: The audio is stored.
    COMPLETED = "completed"
    #: The prediction failed on Replicate, or could not be created.
    FAILED = "failed"
    #: The prediction was canceled.
    CANCELED = "canceled"
    #: The prediction's deadline passed before it started.
    ABORTED = "aborted"
    #: Post-processing gave up after its retries; :func:`replay` can run it again.
    DEAD = "dead"

    @property
    def is_terminal(self) -> bool:
        """True for completed, failed, canceled, aborted and dead."""
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED, JobStatus.DEAD}
)
#: The statuses of jobs still waiting on Replicate: the only ones a delivery may move.
WAITING = (JobStatus.CREATING, JobStatus.PENDING, JobStatus.RUNNING)
#: The statuses a delivery leaves for the dispatcher: audio to process, or an end to log.
DISPATCHED = frozenset(
    {JobStatus.RECEIVED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED}
)

_ENDS_ON_REPLICATE = {JobStatus.RECEIVED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.ABORTED}
_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # creating -> creating is the sweep taking a create over from a process that died.
    JobStatus.CREATING: frozenset(
        {JobStatus.CREATING, JobStatus.PENDING, JobStatus.RUNNING, *_ENDS_ON_REPLICATE}
    ),
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, *_ENDS_ON_REPLICATE}),
    JobStatus.RUNNING: frozenset(_ENDS_ON_REPLICATE),
    JobStatus.RECEIVED: frozenset({JobStatus.PROCESSING}),
    # processing -> processing is a worker re-claiming a job whose owner died;
    # processing -> received hands a job back for a later try.
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PROCESSING, JobStatus.RECEIVED, JobStatus.COMPLETED, JobStatus.DEAD}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
    JobStatus.ABORTED: frozenset(),
    # Only an explicit replay leaves a dead job, never a webhook.
    JobStatus.DEAD: frozenset({JobStatus.RECEIVED}),
}

_BY_PREDICTION_STATUS = {
    "starting": JobStatus.RUNNING,
    "processing": JobStatus.RUNNING,
    "succeeded": JobStatus.RECEIVED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELED,
    "aborted": JobStatus.ABORTED,
}


def can_transition(current: JobStatus, new: JobStatus) -> bool:
    """Tell whether a job may move from *current* to *new*.

    Example:
        >>> can_transition(JobStatus.COMPLETED, JobStatus.RUNNING)
        False
    """
    return new in _TRANSITIONS[current]


def can_apply_event(current: JobStatus, new: JobStatus | None) -> bool:
    """Tell whether a delivery asking for *new* moves a job now in *current*.

    Deliveries only move jobs still waiting on Replicate (``creating``, ``pending``,
    ``running``): a late "succeeded" must not pull a job back from its worker, nor revive a
    dead one, although :func:`can_transition` allows both moves to the worker and to
    :func:`replay`. ``None`` (a status this library does not know) moves nothing.

    Example:
        >>> can_apply_event(JobStatus.PROCESSING, JobStatus.RECEIVED)
        False
    """
    return new is not None and current in WAITING and can_transition(current, new)


def status_for_prediction(prediction_status: object) -> JobStatus | None:
    """The job status a delivery with this prediction status moves a job to; None for a
    status Replicate may add later (the delivery is recorded, the job left as it is).

    Example:
        >>> status_for_prediction("succeeded")
        <JobStatus.RECEIVED: 'received'>
    """
    return (
        _BY_PREDICTION_STATUS.get(prediction_status) if isinstance(prediction_status, str) else None
    )


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def new_job_id() -> str:
    """A fresh job id: 22 URL-safe characters, 128 random bits, so nobody can guess one.

    Example:
        >>> len(new_job_id()), new_job_id() == new_job_id()
        (22, False)
    """
    return secrets.token_urlsafe(16)


@attrs.frozen(kw_only=True)
class Job:
    """One audio generation: a prediction on Replicate and what became of its output.

    ``id`` is the library's own id, minted when the job is recorded, before Replicate hears
    of it; ``prediction_id`` is Replicate's, attached once the create answers (or a delivery
    that outran it arrives). ``prediction`` holds the last prediction payload recorded (the
    output URLs come from it); ``config`` what was asked for, so the job can be run again.

    Example:
        >>> job = Job(id="j1", content_type="sound_effect", content_id="7")
        >>> job.status, job.prediction_id, job.is_terminal
        (<JobStatus.CREATING: 'creating'>, None, False)
    """

    id: str
    content_type: str
    content_id: str
    status: JobStatus = JobStatus.CREATING
    prediction_id: str | None = None
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

    def is_newer_than(self, other: Job) -> bool:
        """Whether this job was asked for after *other* (ties broken by id): of two jobs for
        one piece of content, the newer one's audio is the one kept.

        Example:
            >>> old = Job(id="a", content_type="sound_effect", content_id="7")
            >>> Job(id="b", content_type="sound_effect", content_id="7").is_newer_than(old)
            True
        """
        return (self.created_at, self.id) > (other.created_at, other.id)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form: what the jobs endpoint answers."""
        return {
            "id": self.id,
            "prediction_id": self.prediction_id,
            "content_type": self.content_type,
            "content_id": self.content_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "error": self.error,
            "config": self.config.to_dict() if self.config else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }
