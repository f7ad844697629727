"""A store on any SQLAlchemy engine, sync or async: PostgreSQL (psycopg 3 or asyncpg) or SQLite.

Each operation is written once, as SQLAlchemy Core over a connection; a sync engine runs it
on a worker thread, an async engine through ``AsyncConnection.run_sync``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'SQLAlchemyStore needs SQLAlchemy: pip install "replicate-audio[postgres]"'
    ) from error

from ..errors import ConfigurationError, StorageError
from ..jobs import Job, JobStatus, utcnow
from . import _postgres
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
from ._tables import define_tables, migrate
from .protocols import (
    AudioInfo,
    Delivery,
    DeliveryOutcome,
    LogEntry,
    RecordedEvent,
    StoredAudio,
)

__all__ = ["SQLAlchemyStore"]

T = TypeVar("T")

_DIALECTS = ("postgresql", "sqlite")
_INSTALL_HINT = 'pip install "replicate-audio[postgres]"'
# OSError: asyncpg's refused connection reaches us unwrapped.
_UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError)
# How often a compare-and-set that lost to another writer decides again.
_CAS_TRIES = 5
_ASYNC_DRIVERS = {"postgresql": "postgresql+psycopg_async", "sqlite": "sqlite+aiosqlite"}
#: Seconds a statement (or a wait for a lock) may take on PostgreSQL before it fails.
DEFAULT_TIMEOUT = 2.0
#: Connections a store's own PostgreSQL engine keeps open.
DEFAULT_POOL_SIZE = 16


class SQLAlchemyStore:
    """Jobs, deliveries, audio and logs in four tables of your database (Core, not ORM).

    Works on PostgreSQL (``postgresql+psycopg://``; a bare ``postgresql://`` URL is given
    the psycopg 3 driver; ``postgresql+asyncpg://`` and ``postgresql+psycopg_async://``
    make an async engine) and SQLite. Every write is one short transaction whose first
    statement takes the row lock it needs: deliveries are deduplicated with
    ``INSERT ... ON CONFLICT DO NOTHING`` and status changes are conditional
    ``UPDATE ... WHERE status IN (...)``, so racing processes cannot both win. On
    PostgreSQL every write transaction sets ``lock_timeout`` and ``statement_timeout`` to
    *timeout*, so a locked table fails fast (:class:`StorageError`) instead of hanging.
    Audio is kept in a ``LargeBinary`` column and read into memory to save it.
    An in-memory ``sqlite://`` database is private to one connection: use a file.

    Tables of an older schema are migrated in place when the store opens.

    Args:
        url_or_engine: a database URL, or an engine you configured (``Engine`` or
            ``AsyncEngine``; never disposed here).
        table_prefix: prepended to the table names (``replicate_audio_jobs``, ...).
        timeout: seconds a write may wait for a lock or run on PostgreSQL.
        pool_size: connections the store's own engine keeps open (PostgreSQL; an engine
            you pass keeps its own pool). A request beyond them waits for one, within
            the intake's time budget, rather than opening a connection per request.

    Example:
        >>> import anyio, pathlib, tempfile
        >>> from replicate_audio.jobs import Job
        >>> database = pathlib.Path(tempfile.mkdtemp()) / "jobs.db"
        >>> store = SQLAlchemyStore(f"sqlite:///{database}")
        >>> job = Job(id="j1", content_type="sound_effect", content_id="7")
        >>> anyio.run(store.create_job, job).id
        'j1'
        >>> store.close()
    """

    def __init__(
        self,
        url_or_engine: str | sa.engine.Engine | AsyncEngine,
        *,
        table_prefix: str = "replicate_audio_",
        timeout: float = DEFAULT_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self._owns_engine = isinstance(url_or_engine, str)
        self.engine: sa.engine.Engine | None = None
        self.async_engine: AsyncEngine | None = None
        if isinstance(url_or_engine, AsyncEngine):
            self.async_engine = url_or_engine
        elif isinstance(url_or_engine, sa.engine.Engine):
            self.engine = url_or_engine
        else:
            self._create_engine(url_or_engine, timeout, pool_size)
        dialect = (self.engine or self._sync_of_async()).dialect.name
        if dialect not in _DIALECTS:
            raise ConfigurationError(
                "url_or_engine",
                f"SQLAlchemyStore supports {sorted(_DIALECTS)}, not {dialect!r}",
            )
        self._dialect = dialect
        self.timeout = timeout
        #: Prepended to every table name.
        self.table_prefix = table_prefix
        #: The tables, for ``metadata.drop_all`` or an Alembic ``target_metadata``.
        self.metadata = sa.MetaData()
        self._tables = define_tables(self.metadata, table_prefix)
        self._jobs = self._tables["jobs"]
        self._intake = _postgres.statement(
            self._jobs, self._tables["deliveries"], (self.engine or self._sync_of_async()).dialect
        )
        # One statement needs no transaction of its own: these skip BEGIN and COMMIT.
        autocommit = {"isolation_level": "AUTOCOMMIT"}
        self._autocommit_sync = self.engine.execution_options(**autocommit) if self.engine else None
        self._autocommit_async = (
            self.async_engine.execution_options(**autocommit) if self.async_engine else None
        )
        self._schema_ready = False
        self._schema_lock = anyio.Lock()
        if self.engine is not None:
            with self._errors(), self.engine.begin() as connection:
                self._create_schema(connection)

    def _create_engine(self, url_text: str, timeout: float, pool_size: int) -> None:
        url = sa.engine.make_url(url_text)
        if url.drivername == "postgresql":
            url = url.set(drivername="postgresql+psycopg")
        # On an engine of our own these are the sessions' settings (no statement per
        # transaction); on yours they are set per transaction, so your sessions keep theirs.
        # synchronous_commit=off: a delivery's commit does not wait for its WAL flush (see
        # "Durability" in the storage docs); create_job turns it back on for its own commit.
        limit = str(_milliseconds(timeout))
        session = {"lock_timeout": limit, "statement_timeout": limit, "synchronous_commit": "off"}
        arguments: dict[str, Any] = {}
        # No overflow: SQLAlchemy closes an overflow connection when it is returned, so
        # under load every request beyond the pool paid for a new connection (and for
        # preparing its statements again). Waiting for a pooled one is cheaper.
        pool: dict[str, Any] = {}
        if url.drivername.startswith("postgresql+asyncpg"):
            arguments = {"server_settings": session}
        elif url.drivername.startswith("postgresql"):
            arguments = {
                "options": " ".join(f"-c {name}={value}" for name, value in session.items())
            }
        if url.drivername.startswith("postgresql"):
            pool = {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": timeout}
        try:
            if url.get_dialect().is_async:
                self.async_engine = create_async_engine(url, connect_args=arguments, **pool)
            else:
                self.engine = sa.create_engine(url, connect_args=arguments, **pool)
        except ImportError as error:  # the driver, e.g. psycopg or asyncpg
            raise ImportError(f"{error}: {_INSTALL_HINT}") from error

    def _sync_of_async(self) -> sa.engine.Engine:
        assert self.async_engine is not None
        return self.async_engine.sync_engine

    def _create_schema(self, connection: sa.Connection) -> None:
        migrate(connection, self._tables)
        self.metadata.create_all(connection)
        for table in self._tables.values():  # create_all adds indexes to new tables only
            for index in table.indexes:
                index.create(connection, checkfirst=True)
        self._schema_ready = True

    def close(self) -> None:
        """Dispose of the engine, if this store created it (an async one: see :meth:`aclose`)."""
        if self._owns_engine and self.engine is not None:
            self.engine.dispose()
        if self._owns_engine and self.async_engine is not None:
            self.async_engine.sync_engine.dispose()

    async def aclose(self) -> None:
        """Dispose of the engine, if this store created it."""
        if self._owns_engine and self.async_engine is not None:
            await self.async_engine.dispose()
        self.close()

    def __enter__(self) -> SQLAlchemyStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as error:
            url = (self.engine or self._sync_of_async()).url
            raise StorageError(f"database {url!r}: {error}") from error
        except sa.exc.DBAPIError as error:
            if error.connection_invalidated or _is_timeout(error):
                raise StorageError(f"database: {error.orig or error}") from error
            raise

    # -- running one operation ---------------------------------------------------------

    async def _run(
        self,
        operation: Callable[..., T],
        /,
        *args: Any,
        write: bool = False,
        autocommit: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run ``operation(connection, *args, **kwargs)`` in one transaction (or, for a single
        statement, *autocommit*), off the event loop."""
        step = functools.partial(self._in_transaction, operation, args, kwargs, write)
        with self._errors():
            if self.async_engine is not None:
                if not self._schema_ready:
                    await self._prepare_async()
                engine = self._autocommit_async if autocommit else self.async_engine
                assert engine is not None
                async with engine.begin() as connection:
                    return await connection.run_sync(step)
            sync_engine = self._autocommit_sync if autocommit else self.engine
            assert sync_engine is not None
            return await anyio.to_thread.run_sync(self._begin, sync_engine, step)

    async def _prepare_async(self) -> None:
        """Create or migrate the tables once, however many first calls run at once."""
        assert self.async_engine is not None
        async with self._schema_lock:
            if not self._schema_ready:
                async with self.async_engine.begin() as connection:
                    await connection.run_sync(self._create_schema)

    def _begin(self, engine: sa.engine.Engine, step: Callable[[sa.Connection], T]) -> T:
        with self._errors(), engine.begin() as connection:
            return step(connection)

    def _in_transaction(
        self,
        operation: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        write: bool,
        connection: sa.Connection,
    ) -> T:
        if not self._schema_ready:
            self._create_schema(connection)
        if write and self._dialect == "postgresql" and not self._owns_engine:
            limit = f"{_milliseconds(self.timeout)}ms"
            connection.execute(
                sa.select(
                    sa.func.set_config("lock_timeout", limit, True),
                    sa.func.set_config("statement_timeout", limit, True),
                )
            )
        return operation(connection, *args, **kwargs)

    # -- helpers over one connection ---------------------------------------------------

    def _select_job(self, connection: sa.Connection, column: Any, value: str) -> Job | None:
        row = connection.execute(self._jobs.select().where(column == value)).first()
        return job_from_columns(row._asdict()) if row is not None else None

    def _find(self, connection: sa.Connection, reference: str) -> Job | None:
        jobs = self._jobs
        return self._select_job(connection, jobs.c.id, reference) or self._select_job(
            connection, jobs.c.prediction_id, reference
        )

    def _update_job(
        self, connection: sa.Connection, job_id: str, condition: Any, **values: Any
    ) -> Job | None:
        """Compare-and-set: update the row if *condition* holds; the updated job or None."""
        update = self._jobs.update().where(self._jobs.c.id == job_id, condition).values(**values)
        row = connection.execute(update.returning(*self._jobs.c)).first()
        return job_from_columns(row._asdict()) if row is not None else None

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT with this dialect's ``ON CONFLICT`` clauses."""
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _may_own(self, connection: sa.Connection, job: Job, prediction_id: str) -> bool:
        if job.prediction_id is not None:
            return job.prediction_id == prediction_id
        other = self._select_job(connection, self._jobs.c.prediction_id, prediction_id)
        return other is None or other.id == job.id

    # -- the store ---------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        return await self._run(self._create_job, job, write=True)

    def _create_job(self, connection: sa.Connection, job: Job) -> Job:
        if self._dialect == "postgresql":  # nothing could recover a lost job: wait for the disk
            connection.execute(sa.text("SET LOCAL synchronous_commit = on"))
        insert = self._insert(self._jobs).values(**job_columns(job))
        connection.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
        existing = self._select_job(connection, self._jobs.c.id, job.id)
        assert existing is not None  # inserted, or there already
        return existing

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or whose prediction has this id."""
        return await self._run(self._find, job_id)

    async def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        """Record what the create answered (see :meth:`JobStore.attach_prediction`)."""
        return await self._run(self._attach, job_id, prediction, write=True)

    def _attach(
        self, connection: sa.Connection, job_id: str, prediction: dict[str, Any]
    ) -> Job | None:
        prediction_id = prediction.get("id")
        if not isinstance(prediction_id, str):
            return None
        for _ in range(_CAS_TRIES):
            job = self._select_job(connection, self._jobs.c.id, job_id)
            if job is None or not self._may_own(connection, job, prediction_id):
                return None
            values: dict[str, Any] = {}
            if job.prediction_id is None:
                values["prediction_id"] = prediction_id
            if job.status is JobStatus.CREATING:
                values.update(status=JobStatus.PENDING.value, prediction=prediction)
            if not values:
                return job
            moved = self._update_job(
                connection, job_id, self._unchanged(job), **values, updated_at=utcnow()
            )
            if moved is not None:
                return moved
        raise StorageError(f"job {job_id} kept changing while its prediction was attached")

    def _unchanged(self, job: Job) -> sa.ColumnElement[bool]:
        """The row still says what *job* was read as: a compare-and-set for dialects whose
        reads take no row lock (SQLite ignores FOR UPDATE)."""
        column = self._jobs.c.prediction_id
        same = column.is_(None) if job.prediction_id is None else column == job.prediction_id
        return sa.and_(self._jobs.c.status == job.status.value, same)

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        """Record one delivery, once per ``webhook_id`` (see :meth:`JobStore.record_delivery`).

        On PostgreSQL this is one statement, one round trip (see ``_postgres``).
        """
        if self._dialect == "postgresql":
            return await self._run(
                _postgres.record_delivery, self._intake, delivery, write=True,
                autocommit=self._owns_engine,
            )  # fmt: skip
        try:
            return await self._run(self._record_delivery, delivery, write=True)
        except _NotOurs:
            return RecordedEvent(DeliveryOutcome.NOT_OURS, None)

    def _record_delivery(self, connection: sa.Connection, delivery: Delivery) -> RecordedEvent:
        jobs, prediction_id = self._jobs, delivery.prediction_id
        column = jobs.c.id if delivery.job_id is not None else jobs.c.prediction_id
        key = delivery.job_id if delivery.job_id is not None else prediction_id
        row = connection.execute(jobs.select().where(column == key).with_for_update()).first()
        job = job_from_columns(row._asdict()) if row is not None else None
        if (
            job is None
            or not self._may_own(connection, job, prediction_id)
            or (delivery.content_type is not None and delivery.content_type != job.content_type)
            or (delivery.content_id is not None and delivery.content_id != job.content_id)
        ):
            return RecordedEvent(DeliveryOutcome.NOT_OURS, None)
        deliveries = self._tables["deliveries"]
        insert = self._insert(deliveries).values(
            webhook_id=delivery.webhook_id, job_id=job.id, created_at=utcnow()
        )
        # RETURNING, not rowcount: SQLAlchemy reports -1 for INSERT on psycopg 3
        # (sqlalchemy/sqlalchemy#10696).
        inserted = insert.on_conflict_do_nothing().returning(deliveries.c.webhook_id)
        if connection.execute(inserted).first() is None:
            return RecordedEvent(DeliveryOutcome.DUPLICATE, job)
        new = event_status(delivery.prediction)
        for _ in range(_CAS_TRIES):
            values: dict[str, Any] = {}
            if job.prediction_id is None:
                values["prediction_id"] = prediction_id
            if new is not None and job.status in event_sources(new):
                values.update(status=new.value, prediction=delivery.prediction)
            if not values:
                return RecordedEvent(DeliveryOutcome.RECORDED, job)
            moved = self._update_job(
                connection, job.id, self._unchanged(job), **values, updated_at=utcnow()
            )
            if moved is not None:
                return RecordedEvent(DeliveryOutcome.RECORDED, moved, changed="status" in values)
            # Another writer moved the job since it was read: decide again on what it is now.
            reread = self._select_job(connection, jobs.c.id, job.id)
            if reread is None or reread.prediction_id not in (None, prediction_id):
                raise _NotOurs  # rolls the delivery back: nothing is remembered
            job = reread
        raise StorageError(f"job {job.id} kept changing while a delivery was recorded")

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
        return await self._run(self._update_job, job_id, condition, write=True, **values)

    async def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
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
        return await self._run(
            self._update_job, job_id, claimable, write=True,
            status=JobStatus.PROCESSING.value, attempts=jobs.c.attempts + 1, updated_at=now,
        )  # fmt: skip

    async def list_jobs(
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
        rows = await self._run(_all, query.limit(max(limit, 0)))
        return [job_from_columns(row) for row in rows]

    async def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool:
        """Store the bytes of *source* (read whole into memory) as *job*'s content's audio
        (or its file *name*), unless a newer job's audio is stored already."""
        data = await anyio.to_thread.run_sync(read_source, source)
        return await self._run(self._save_audio, job, data, info, name, write=True)

    def _save_audio(
        self, connection: sa.Connection, job: Job, data: bytes, info: AudioInfo, name: str | None
    ) -> bool:
        table = self._tables["audio" if name is None else "audio_files"]
        values = {
            "content_type": job.content_type, "content_id": job.content_id, "job_id": job.id,
            "format": info.format, "duration": info.duration, "size": len(data),
            "data": data, "created_at": utcnow(), "job_created_at": as_utc(job.created_at),
        }  # fmt: skip
        this_content = (
            table.c.content_type == job.content_type,
            table.c.content_id == job.content_id,
        )
        stored = sa.tuple_(table.c.job_created_at, table.c.job_id)
        if name is not None:
            values["name"] = name
            # The named files of a content are one job's: none of a newer job may be there,
            # and an older job's make way.
            mine = sa.tuple_(
                sa.literal(values["job_created_at"], table.c.job_created_at.type),
                sa.literal(job.id, table.c.job_id.type),
            )
            newer = mine < stored
            if connection.execute(sa.select(table.c.job_id).where(*this_content, newer)).first():
                return False
            connection.execute(table.delete().where(*this_content, table.c.job_id != job.id))
        upsert = self._insert(table).values(**values)
        # Replace only audio of an older (or the same) job: the newest job for content wins.
        incoming = sa.tuple_(upsert.excluded.job_created_at, upsert.excluded.job_id)
        upsert = upsert.on_conflict_do_update(
            index_elements=[column.name for column in table.primary_key],
            set_={key: upsert.excluded[key] for key in values if key not in table.primary_key},
            where=sa.or_(table.c.job_created_at.is_(None), stored <= incoming),
        )
        return connection.execute(upsert.returning(table.c.job_id)).first() is not None

    async def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """The stored audio for this content (or its file *name*), or None."""
        table = self._tables["audio" if name is None else "audio_files"]
        query = table.select().where(
            table.c.content_type == content_type, table.c.content_id == content_id
        )
        if name is not None:
            query = query.where(table.c.name == name)
        rows = await self._run(_all, query)
        if not rows:
            return None
        row = rows[0]
        return StoredAudio(
            row["content_type"], row["content_id"], row["job_id"], row["format"],
            row["duration"], row["size"], bytes(row["data"]), name,
        )  # fmt: skip

    async def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        insert = self._insert(self._tables["logs"]).values(**log_columns(entry))
        statement = insert.on_conflict_do_nothing(index_elements=["job_id", "status"])
        await self._run(_execute, statement, write=True)

    async def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        logs = self._tables["logs"]
        query = logs.select().order_by(logs.c.created_at, logs.c.seq)
        if job_id is not None:
            query = query.where(logs.c.job_id == job_id)
        return [log_from_columns(row) for row in await self._run(_all, query)]


class _NotOurs(Exception):
    """Raised inside a delivery's transaction to roll it back: the job went to another
    prediction between our read and our write."""


def _milliseconds(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _all(connection: sa.Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [row._asdict() for row in connection.execute(query).all()]


def _execute(connection: sa.Connection, statement: sa.Executable) -> None:
    connection.execute(statement)


def _is_timeout(error: sa.exc.DBAPIError) -> bool:
    """PostgreSQL's lock_not_available (55P03) and query_canceled (57014): our timeouts."""
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in ("55P03", "57014")
