"""What the built-in stores share: jobs and log entries as table columns, and the state rules."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..config import ReplicateAudioConfig
from ..errors import StorageError
from ..jobs import Job, JobStatus, can_apply_event, can_transition, status_for_prediction
from .protocols import LogEntry

__all__ = [
    "as_utc",
    "event_sources",
    "event_status",
    "iso_text",
    "job_columns",
    "job_from_columns",
    "log_columns",
    "log_from_columns",
    "movable_to",
    "read_source",
    "stale_cutoff",
]

# Fixed width, so that text comparison in SQL agrees with time order.
_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def as_utc(moment: datetime) -> datetime:
    """*moment* in UTC; a naive datetime is taken to be UTC already (SQLite drops the zone)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def iso_text(moment: datetime) -> str:
    """*moment* as fixed-width ISO 8601 text in UTC."""
    return as_utc(moment).strftime(_ISO_FORMAT)


def _time(value: datetime | str) -> datetime:
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _json(value: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(value, str):
        decoded: dict[str, Any] = json.loads(value)
        return decoded
    return value


def job_columns(job: Job) -> dict[str, Any]:
    """The columns of a job row: JSON fields as dicts, times as UTC datetimes."""
    return {
        "id": job.id,
        "prediction_id": job.prediction_id,
        "content_type": job.content_type,
        "content_id": job.content_id,
        "status": job.status.value,
        "attempts": job.attempts,
        "error": job.error,
        "config": job.config.to_dict() if job.config is not None else None,
        "prediction": job.prediction,
        "created_at": as_utc(job.created_at),
        "updated_at": as_utc(job.updated_at),
    }


def job_from_columns(row: Mapping[str, Any]) -> Job:
    """The inverse of :func:`job_columns`; also accepts JSON and times stored as text."""
    config = _json(row["config"])
    return Job(
        id=row["id"],
        prediction_id=row["prediction_id"],
        content_type=row["content_type"],
        content_id=row["content_id"],
        status=JobStatus(row["status"]),
        attempts=row["attempts"],
        error=row["error"],
        config=ReplicateAudioConfig.from_dict(config) if config is not None else None,
        prediction=_json(row["prediction"]),
        created_at=_time(row["created_at"]),
        updated_at=_time(row["updated_at"]),
    )


def log_columns(entry: LogEntry) -> dict[str, Any]:
    """The columns of a result-log row."""
    return {
        "job_id": entry.job_id,
        "content_type": entry.content_type,
        "content_id": entry.content_id,
        "status": entry.status.value,
        "message": entry.message,
        "duration": entry.duration,
        "size": entry.size,
        "created_at": as_utc(entry.created_at),
    }


def log_from_columns(row: Mapping[str, Any]) -> LogEntry:
    """The inverse of :func:`log_columns`."""
    return LogEntry(
        job_id=row["job_id"],
        content_type=row["content_type"],
        content_id=row["content_id"],
        status=JobStatus(row["status"]),
        message=row["message"],
        duration=row["duration"],
        size=row["size"],
        created_at=_time(row["created_at"]),
    )


def event_status(prediction: Mapping[str, Any]) -> JobStatus | None:
    """The job status a delivery of *prediction* asks for; None for a status this library
    does not know (recorded, but moving nothing)."""
    return status_for_prediction(prediction.get("status"))


def movable_to(new: JobStatus, expected: Collection[JobStatus] | None = None) -> list[JobStatus]:
    """The statuses (of *expected*, or all) from which a job may move to *new*, sorted."""
    candidates = JobStatus if expected is None else expected
    return sorted(
        {status for status in candidates if can_transition(status, new)}, key=lambda s: s.value
    )


def event_sources(new: JobStatus | None) -> list[JobStatus]:
    """The statuses from which a delivery asking for *new* moves a job."""
    return sorted(
        (status for status in JobStatus if can_apply_event(status, new)), key=lambda s: s.value
    )


def stale_cutoff(now: datetime, stale_after: float) -> datetime:
    """A ``processing`` job last updated before this time has lost its worker."""
    return as_utc(now) - timedelta(seconds=stale_after)


def read_source(source: Path) -> bytes:
    """The whole audio file at *source*, for stores that keep audio in memory or a column.

    Raises:
        StorageError: the file cannot be read.
    """
    try:
        return Path(source).read_bytes()
    except OSError as error:
        raise StorageError(f"cannot read audio {source}: {error}") from error
