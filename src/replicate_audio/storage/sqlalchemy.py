"""A store on any SQLAlchemy engine for PostgreSQL (psycopg 3) or SQLite, with SQLAlchemy Core."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'SQLAlchemyStore needs SQLAlchemy: pip install "replicate-audio[postgres]"'
    ) from error

from ..errors import ConfigurationError, JobNotFoundError, StorageError
from ..jobs import Job, JobStatus, utcnow
from ._records import (
    as_utc,
    event_sources,
    event_status,
    job_columns,
    job_from_columns,
    log_columns,
    log_from_columns,
    movable_to,
    read_source,
    stale_cutoff,
)
from ._tables import define_tables
from .protocols import AudioInfo, LogEntry, RecordedEvent, StoredAudio

__all__ = ["SQLAlchemyStore"]

_DIALECTS = ("postgresql", "sqlite")
_INSTALL_HINT = 'pip install "replicate-audio[postgres]"'
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


class SQLAlchemyStore:
    """Jobs, deliveries, audio and logs in four tables of your database (Core, not ORM).

    Works on PostgreSQL (``postgresql+psycopg://``; a bare ``postgresql://`` URL is given
    the psycopg 3 driver) and SQLite. Every write is one short transaction whose first
    statement takes the row lock it needs: deliveries are deduplicated with
    ``INSERT ... ON CONFLICT DO NOTHING`` and status changes are conditional
    ``UPDATE ... WHERE status IN (...)``, so racing processes cannot both win.
    Audio is kept in a ``LargeBinary`` column and read into memory to save it.
    An in-memory ``sqlite://`` database is private to one thread: use a file for more.

    Args:
        url_or_engine: a database URL, or an engine you configured (never disposed here).
        table_prefix: prepended to the table names (``replicate_audio_jobs``, ...).

    Example:
        >>> from replicate_audio.jobs import Job
        >>> store = SQLAlchemyStore("sqlite://")
        >>> store.create_job(Job(id="p1", content_type="sound_effect", content_id="7")).id
        'p1'
        >>> store.close()
    """

    def __init__(
        self, url_or_engine: str | sa.engine.Engine, *, table_prefix: str = "replicate_audio_"
    ) -> None:
        self._owns_engine = not isinstance(url_or_engine, sa.engine.Engine)
        if isinstance(url_or_engine, sa.engine.Engine):
            self.engine = url_or_engine
        else:
            url = sa.engine.make_url(url_or_engine)
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            try:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
            except ImportError as error:  # the driver, e.g. psycopg
                raise ImportError(f"{error}: {_INSTALL_HINT}") from error
        if self.engine.dialect.name not in _DIALECTS:
            raise ConfigurationError(
                "url_or_engine",
                f"SQLAlchemyStore supports {sorted(_DIALECTS)}, not {self.engine.dialect.name!r}",
            )
        #: Prepended to every table name.
        self.table_prefix = table_prefix
        #: The tables, for ``metadata.drop_all`` or an Alembic ``target_metadata``.
        self.metadata = sa.MetaData()
        self._tables = define_tables(self.metadata, table_prefix)
        self._jobs = self._tables["jobs"]
        with self._errors():
            self.metadata.create_all(self.engine)

    def close(self) -> None:
        """Dispose of the engine, if this store created it."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> SQLAlchemyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as error:
            raise StorageError(f"database {self.engine.url!r}: {error}") from error

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.begin() as connection:
            yield connection

    def _select_job(self, connection: sa.Connection, job_id: str) -> Job | None:
        row = connection.execute(self._jobs.select().where(self._jobs.c.id == job_id)).first()
        return job_from_columns(row._asdict()) if row is not None else None

    def _update_job(
        self, connection: sa.Connection, job_id: str, condition: Any, **values: Any
    ) -> Job | None:
        """Compare-and-set: update the row if *condition* holds; the updated job or None."""
        update = self._jobs.update().where(self._jobs.c.id == job_id, condition).values(**values)
        row = connection.execute(update.returning(*self._jobs.c)).first()
        return job_from_columns(row._asdict()) if row is not None else None

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT with this dialect's ``ON CONFLICT`` clauses."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def create_job(self, job: Job) -> Job:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        with self._transaction() as connection:
            insert = self._insert(self._jobs).values(**job_columns(job))
            connection.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
            existing = self._select_job(connection, job.id)
        assert existing is not None  # inserted, or there already
        return existing

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._errors(), self.engine.connect() as connection:
            return self._select_job(connection, job_id)

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
        deliveries = self._tables["deliveries"]
        with self._transaction() as connection:
            insert = self._insert(deliveries).values(
                webhook_id=webhook_id, job_id=job_id, created_at=utcnow()
            )
            # RETURNING, not rowcount: SQLAlchemy reports -1 for INSERT on psycopg 3
            # (sqlalchemy/sqlalchemy#10696).
            inserted = insert.on_conflict_do_nothing().returning(deliveries.c.webhook_id)
            fresh = connection.execute(inserted).first() is not None
            moved = None
            if fresh:
                moved = self._update_job(
                    connection, job_id, self._jobs.c.status.in_(event_sources(new)),
                    status=new.value, prediction=prediction, updated_at=utcnow(),
                )  # fmt: skip
            job = moved or self._select_job(connection, job_id)
            if job is None:
                # Raising rolls the delivery back, so a retry can be recorded later.
                raise JobNotFoundError(job_id)
        return RecordedEvent(job=job, duplicate=not fresh, changed=moved is not None)

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
        sources = movable_to(new, expected)
        if not sources:
            return None
        values: dict[str, Any] = {"status": new.value, "error": error, "updated_at": utcnow()}
        if prediction is not None:
            values["prediction"] = prediction
        condition: sa.ColumnElement[bool] = self._jobs.c.status.in_(sources)
        if attempt is not None:
            condition = sa.and_(condition, self._jobs.c.attempts == attempt)
        with self._transaction() as connection:
            return self._update_job(connection, job_id, condition, **values)

    def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """Take a ``received`` job, or a ``processing`` one idle for *stale_after* seconds.

        Returns the claimed job (``attempts`` incremented), or None if another worker has it.
        """
        now, jobs = utcnow(), self._jobs
        claimable = sa.or_(
            jobs.c.status == JobStatus.RECEIVED.value,
            sa.and_(
                jobs.c.status == JobStatus.PROCESSING.value,
                jobs.c.updated_at < stale_cutoff(now, stale_after),
            ),
        )
        with self._transaction() as connection:
            return self._update_job(
                connection, job_id, claimable,
                status=JobStatus.PROCESSING.value, attempts=jobs.c.attempts + 1, updated_at=now,
            )  # fmt: skip

    def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs in any of *statuses* last updated before *updated_before*, oldest first."""
        query = self._jobs.select().order_by(self._jobs.c.updated_at, self._jobs.c.id)
        if statuses is not None:
            query = query.where(self._jobs.c.status.in_([JobStatus(s).value for s in statuses]))
        if updated_before is not None:
            query = query.where(self._jobs.c.updated_at < as_utc(updated_before))
        with self._errors(), self.engine.connect() as connection:
            rows = connection.execute(query.limit(max(limit, 0))).all()
        return [job_from_columns(row._asdict()) for row in rows]

    def save_audio(
        self, *, content_type: str, content_id: str, job_id: str, source: Path, info: AudioInfo
    ) -> None:
        """Store the bytes of *source* (read whole into memory), replacing earlier audio."""
        data = read_source(source)
        audio = self._tables["audio"]
        values = {
            "content_type": content_type, "content_id": content_id, "job_id": job_id,
            "format": info.format, "duration": info.duration, "size": len(data),
            "data": data, "created_at": utcnow(),
        }  # fmt: skip
        upsert = self._insert(audio).values(**values)
        upsert = upsert.on_conflict_do_update(
            index_elements=["content_type", "content_id"],
            set_={name: upsert.excluded[name] for name in values if name not in audio.primary_key},
        )
        with self._transaction() as connection:
            connection.execute(upsert)

    def get_audio(self, content_type: str, content_id: str) -> StoredAudio | None:
        """The stored audio for this content, or None."""
        audio = self._tables["audio"]
        query = audio.select().where(
            audio.c.content_type == content_type, audio.c.content_id == content_id
        )
        with self._errors(), self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return StoredAudio(
            row.content_type, row.content_id, row.job_id, row.format, row.duration, row.size,
            bytes(row.data),
        )  # fmt: skip

    def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        insert = self._insert(self._tables["logs"]).values(**log_columns(entry))
        with self._transaction() as connection:
            connection.execute(insert.on_conflict_do_nothing(index_elements=["job_id", "status"]))

    def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        logs = self._tables["logs"]
        query = logs.select().order_by(logs.c.created_at, logs.c.seq)
        if job_id is not None:
            query = query.where(logs.c.job_id == job_id)
        with self._errors(), self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [log_from_columns(row._asdict()) for row in rows]
