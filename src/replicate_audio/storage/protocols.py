"""The storage plug points: a job store, an audio store and a result log, as async Protocols.

The core awaits these and nothing else. A store written with plain blocking methods is
wrapped once (:func:`~replicate_audio.storage.from_blocking`, or by the facade when it is
built), never per call; code with no event loop uses :class:`~replicate_audio.storage.SyncStore`.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import attrs

from ..errors import InvalidPayloadError
from ..jobs import Job, JobStatus, utcnow

__all__ = [
    "AudioInfo",
    "AudioStore",
    "BlockingStore",
    "Delivery",
    "DeliveryOutcome",
    "JobStore",
    "LogEntry",
    "RecordedEvent",
    "ResultLog",
    "Store",
    "StoredAudio",
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
    """Audio read back from an audio store; ``job_id`` names the job it came from, and
    ``name`` the file (None: the content's one audio; a stem's name, such as ``vocals``).

    Example:
        >>> StoredAudio("sound_effect", "1", "j1", "wav", 0.5, 3, b"RIF").to_base64()
        'UklG'
    """

    content_type: str
    content_id: str
    job_id: str
    format: str
    duration: float
    size: int
    data: bytes = attrs.field(repr=False)
    name: str | None = None

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


def _has_prediction_id(_: object, __: attrs.Attribute[Any], prediction: object) -> None:
    identifier = prediction.get("id") if isinstance(prediction, dict) else None
    if not isinstance(identifier, str) or not identifier:
        raise InvalidPayloadError("a delivery's prediction needs a string 'id'")


@attrs.frozen(kw_only=True)
class Delivery:
    """One piece of news about a prediction, to be recorded once: a webhook, a prediction
    fetched by the reconciler, or one handed to :func:`process_webhook_result`.

    Example:
        >>> prediction = {"id": "p1", "status": "starting"}
        >>> Delivery(webhook_id="msg_1", prediction=prediction).prediction_id
        'p1'
    """

    #: Deduplicates: a second delivery with the same id changes nothing.
    webhook_id: str
    #: The prediction as Replicate sent it (decoded JSON), with a string ``id``.
    prediction: dict[str, Any] = attrs.field(validator=_has_prediction_id)
    #: The job id from the webhook URL's ``job`` parameter, when it has one.
    job_id: str | None = None
    #: The content the webhook URL names; a job of other content is not matched.
    content_type: str | None = None
    content_id: str | None = None

    @property
    def prediction_id(self) -> str:
        """The prediction's id."""
        return str(self.prediction.get("id", ""))


class DeliveryOutcome(str, enum.Enum):
    """What recording a delivery came to."""

    #: Recorded for the first time (the job may or may not have moved).
    RECORDED = "recorded"
    #: This ``webhook_id`` was recorded before; nothing changed.
    DUPLICATE = "duplicate"
    #: No job matches (unknown job or prediction, or other content); nothing was recorded.
    NOT_OURS = "not_ours"


@attrs.frozen
class RecordedEvent:
    """What :meth:`JobStore.record_delivery` did with a delivery."""

    outcome: DeliveryOutcome
    #: The job after the delivery; None when it was not ours.
    job: Job | None
    #: True when the delivery moved the job to a new status.
    changed: bool = False

    @property
    def duplicate(self) -> bool:
        """True when this delivery had been recorded before."""
        return self.outcome is DeliveryOutcome.DUPLICATE


@runtime_checkable
class JobStore(Protocol):
    """Durable job state with compare-and-set transitions."""

    async def create_job(self, job: Job) -> Job:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or whose prediction has this id; None if there is none."""
        ...

    async def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        """Record what the create answered: set the job's ``prediction_id`` (unless a
        delivery that outran the create did already) and move a ``creating`` job to
        ``pending``. Returns the job, or None when there is no such job or it belongs to
        another prediction."""
        ...

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        """Record one delivery, atomically: in one transaction, find its job (by the job id
        from its URL, else by prediction id) and check the content matches, dedupe by
        ``webhook_id``, attach the prediction id if the job has none yet, and move the job
        as :func:`~replicate_audio.jobs.can_apply_event` allows, storing the prediction.

        A delivery that is not ours is not remembered, so nothing stops a later one.
        """
        ...

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
        """Move the job to *new* if its status is in *expected* and the move is allowed.

        Sets ``error`` (and ``prediction`` when given). With *attempt*, moves it only while
        its ``attempts`` still equal *attempt*: a worker whose claim another took over (its
        lease ran out) can no longer move the job. Returns the updated job, or None when the
        compare-and-set lost.
        """
        ...

    async def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """Take a job for processing: ``received`` -> ``processing``, or re-take one left in
        ``processing`` for more than *stale_after* seconds (its worker died).

        Increments ``attempts``. Returns the claimed job, or None if another worker has it.
        """
        ...

    async def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs in any of *statuses* last updated before *updated_before*, oldest first."""
        ...


@runtime_checkable
class AudioStore(Protocol):
    """Keeps the finished audio of each piece of content: the newest job's.

    A content has one audio (``name=None``), and may have named files besides (the stems
    of a stem-separation model, saved by :class:`~replicate_audio.processors.StemsProcessor`).
    The named files of a content are one job's: saving a newer job's file drops the files
    of older jobs, and an older job's file is refused once a newer job has saved one. The
    library passes ``name`` only for named files, so a store written before names existed
    keeps working with the single-file processors.
    """

    async def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool:
        """Store the audio file at *source* as the audio of *job*'s content (or as its file
        *name*), unless audio from a newer job of that content (:meth:`Job.is_newer_than`)
        is stored already.

        Saving for the same job twice leaves one copy (a retried job may save again).
        Returns whether *job*'s audio is now the stored one.
        """
        ...

    async def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """The stored audio for this content (or its file *name*), or None."""
        ...


@runtime_checkable
class ResultLog(Protocol):
    """An append-only record of outcomes."""

    async def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        ...

    async def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        ...


@runtime_checkable
class Store(JobStore, AudioStore, ResultLog, Protocol):
    """All three storage roles in one object, as the built-in stores provide them."""


@runtime_checkable
class BlockingStore(Protocol):
    """:class:`Store` with plain blocking methods (the same names, arguments and results),
    for a store written over a synchronous database client. Wrap it once with
    :func:`~replicate_audio.storage.from_blocking`; the facade does so itself."""

    def create_job(self, job: Job) -> Job: ...
    def get_job(self, job_id: str) -> Job | None: ...
    def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None: ...
    def record_delivery(self, delivery: Delivery) -> RecordedEvent: ...
    def transition(
        self,
        job_id: str,
        *,
        expected: Collection[JobStatus],
        new: JobStatus,
        error: str | None = None,
        prediction: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Job | None: ...
    def claim_job(self, job_id: str, *, stale_after: float) -> Job | None: ...
    def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]: ...
    def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool: ...
    def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None: ...
    def log_result(self, entry: LogEntry) -> None: ...
    def list_logs(self, job_id: str | None = None) -> list[LogEntry]: ...
