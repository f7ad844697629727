"""The embedded default store: one SQLite file (WAL) for jobs and logs, audio files beside it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ..errors import ConfigurationError, StorageError
from ..jobs import Job, JobStatus, utcnow
from ._records import iso_text, job_columns, job_from_columns, log_columns, log_from_columns
from ._serial import SerialJobStore
from ._writer import Writer
from .protocols import AudioInfo, Delivery, LogEntry, RecordedEvent, StoredAudio

__all__ = ["SQLiteStore"]

T = TypeVar("T")

SCHEMA_VERSION = 3
#: Seconds a write waits for another process's write lock before it fails (StorageError).
DEFAULT_TIMEOUT = 2.0
_COPY_CHUNK = 1 << 20

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, content_type TEXT NOT NULL, content_id TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT, config TEXT,
        prediction TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        prediction_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS jobs_status_updated_at ON jobs (status, updated_at)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        webhook_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, received_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audio (
        content_type TEXT NOT NULL, content_id TEXT NOT NULL, job_id TEXT NOT NULL,
        format TEXT NOT NULL, duration REAL NOT NULL, size INTEGER NOT NULL,
        file_name TEXT NOT NULL, updated_at TEXT NOT NULL, job_created_at TEXT,
        PRIMARY KEY (content_type, content_id))""",
    """CREATE TABLE IF NOT EXISTS audio_files (
        content_type TEXT NOT NULL, content_id TEXT NOT NULL, name TEXT NOT NULL,
        job_id TEXT NOT NULL, format TEXT NOT NULL, duration REAL NOT NULL,
        size INTEGER NOT NULL, file_name TEXT NOT NULL, updated_at TEXT NOT NULL,
        job_created_at TEXT NOT NULL, PRIMARY KEY (content_type, content_id, name))""",
    """CREATE TABLE IF NOT EXISTS logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,
        content_type TEXT NOT NULL, content_id TEXT NOT NULL, status TEXT NOT NULL,
        message TEXT NOT NULL, duration REAL, size INTEGER, created_at TEXT NOT NULL,
        UNIQUE (job_id, status))""",
)
# Version 1 -> 2: job ids became the library's own, prediction ids a column of their own
# (a version-1 job's id was its prediction's), and audio remembers which job's it is.
_MIGRATIONS = {
    1: (
        "ALTER TABLE jobs ADD COLUMN prediction_id TEXT",
        "UPDATE jobs SET prediction_id = id",
        "ALTER TABLE audio ADD COLUMN job_created_at TEXT",
        """UPDATE audio SET job_created_at =
            (SELECT created_at FROM jobs WHERE jobs.id = audio.job_id)""",
    ),
    # Version 2 -> 3: named files (stems) in a table of their own, made by the schema.
    2: (),
}
_INDEXES = ("CREATE UNIQUE INDEX IF NOT EXISTS jobs_prediction_id ON jobs (prediction_id)",)
_JOB_FIELDS = ["id", "prediction_id", "content_type", "content_id", "status", "attempts",
               "error", "config", "prediction", "created_at", "updated_at"]  # fmt: skip
_LOG_FIELDS = ["job_id", "content_type", "content_id", "status", "message", "duration", "size",
               "created_at"]  # fmt: skip


def _encode(columns: dict[str, Any]) -> dict[str, Any]:
    """Columns as SQLite keeps them: JSON as text, times as fixed-width ISO text."""
    encoded = dict(columns)
    for name, value in columns.items():
        if isinstance(value, datetime):
            encoded[name] = iso_text(value)
        elif isinstance(value, dict):
            encoded[name] = json.dumps(value, separators=(",", ":"))
    return encoded


def _placeholders(fields: Collection[str]) -> str:
    return ", ".join(f":{name}" for name in fields)


class SQLiteStore(SerialJobStore):
    """Jobs, deliveries and logs in one SQLite file; audio as files in a directory beside it.

    Reads run on worker threads (one connection each); every write goes to one writer
    thread per store, which commits whatever is queued in one transaction (group commit)
    and answers each caller once its own write is committed. The event loop never waits
    on SQLite. Safe between processes on one machine (WAL, ``BEGIN IMMEDIATE``).

    Durability: WAL with ``synchronous=NORMAL``. A committed write survives a crash of the
    process; a power loss may lose the last commits (never corrupting the file). A lost
    delivery is sent again by Replicate or found by the reconciler; a lost job record is
    the one thing not recoverable, so :meth:`create_job` commits with a full sync.

    Tables are created on first use; a file of an older schema is migrated in place.

    Args:
        path: the database file; created if missing (its directory must exist).
        audio_dir: where audio files go; default ``<path>.audio/`` beside the database.
        timeout: seconds a write waits for another process's lock before it fails with
            :class:`StorageError`; keep it under the intake's time budget.

    Example:
        >>> import anyio, tempfile, pathlib
        >>> from replicate_audio.jobs import Job
        >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()) / "jobs.db")
        >>> job = Job(id="j1", content_type="sound_effect", content_id="7")
        >>> anyio.run(store.create_job, job).id
        'j1'
        >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        audio_dir: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            raise ConfigurationError(
                "path", "SQLiteStore needs a file that every thread can open; use MemoryStore"
            )
        self.path = Path(path)
        self.audio_dir = Path(audio_dir) if audio_dir is not None else Path(f"{self.path}.audio")
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        # Each connection with the thread that owns it, so that those of finished threads
        # (anyio's idle workers, one-request threads) are closed rather than piling up.
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        # A forked child keeps its parent's connections referenced and never closes them:
        # closing (or collecting) one there could checkpoint the parent's WAL under it.
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []
        self._schema_ready = False
        self._closed = False
        # The writer thread's steps read and write through its own thread's connection.
        self._writer = Writer(self._connection, str(self.path))

    def close(self) -> None:
        """Close the store: every later call raises :class:`StorageError`.

        Queued writes are committed first. The connections of this thread and of finished
        threads are closed here. A connection that another live thread owns may be in the
        middle of a query, so it is left to that thread, which closes it on its next call.
        """
        self._writer.close()
        me = threading.current_thread()
        with self._lock:
            self._closed = True
            self._set_aside_inherited()
            self._release(lambda thread: thread is me or not thread.is_alive())

    def _set_aside_inherited(self) -> None:
        """In a forked child, set the parent's connections aside, unclosed; lock held."""
        if self._pid != os.getpid():
            self._inherited += [connection for _, connection in self._connections]
            self._connections, self._pid = [], os.getpid()

    def _release(self, owned_by: Callable[[threading.Thread], bool]) -> None:
        """Close and forget the connections whose thread *owned_by* picks; lock held."""
        released = [c for thread, c in self._connections if owned_by(thread)]
        self._connections = [(t, c) for t, c in self._connections if not owned_by(t)]
        for connection in released:
            connection.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as error:
            raise StorageError(f"SQLite store {self.path}: {error}") from error

    def _open(self) -> sqlite3.Connection:
        """A new connection with our settings, the schema ready (any thread)."""
        # isolation_level=None: we issue BEGIN ourselves; check_same_thread=False only
        # so that close() may close the connections of other threads.
        with self._errors():
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            self._use_wal(connection)
            connection.execute("PRAGMA synchronous=NORMAL")
            if not self._schema_ready:
                self._create_schema(connection)
                self._schema_ready = True
        return connection

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Put the file in WAL mode (it stays so), waiting up to ``timeout`` for the lock.

        Switching takes the file for itself, and SQLite answers "database is locked" at
        once rather than calling the busy handler: two processes opening a new file at the
        same moment (gunicorn workers each loading the app) race for it. The loser retries.
        """
        deadline = time.monotonic() + self.timeout
        while connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _connection(self) -> sqlite3.Connection:
        """This thread's reading connection."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        # A forked child must not touch its parent's connections: it opens its own.
        if connection is not None and self._local.pid == os.getpid():
            if not self._closed:
                return connection
            self._local.connection = None
        with self._lock:
            self._set_aside_inherited()
            if self._closed:
                me = threading.current_thread()  # close() left this thread's connection to it
                self._release(lambda thread: thread is me or not thread.is_alive())
                raise StorageError(f"SQLite store {self.path} is closed")
            connection = self._open()
            self._release(lambda thread: not thread.is_alive())
            self._connections.append((threading.current_thread(), connection))
        self._local.connection, self._local.pid = connection, os.getpid()
        return connection

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema version {version}; this replicate-audio "
                    f"knows up to {SCHEMA_VERSION}: upgrade replicate-audio"
                )
            for old in range(version, SCHEMA_VERSION) if version else ():
                for statement in _MIGRATIONS[old]:
                    connection.execute(statement)
            for statement in (*_SCHEMA, *_INDEXES):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()

    # -- the primitives the rules run on (inside the writer's transaction) -------------

    def _query(self, sql: str, parameters: Any = ()) -> list[dict[str, Any]]:
        with self._errors():
            rows = self._connection().execute(sql, parameters).fetchall()
        return [dict(zip(row.keys(), row, strict=True)) for row in rows]

    def _one_job(self, where: str, value: str) -> Job | None:
        rows = self._query(f"SELECT * FROM jobs WHERE {where} = ?", (value,))  # noqa: S608
        return job_from_columns(rows[0]) if rows else None

    def _load_job(self, job_id: str) -> Job | None:
        return self._one_job("id", job_id)

    def _load_by_prediction(self, prediction_id: str) -> Job | None:
        return self._one_job("prediction_id", prediction_id)

    def _save_job(self, job: Job) -> None:
        updates = ", ".join(f"{name} = excluded.{name}" for name in _JOB_FIELDS[1:])
        self._connection().execute(
            f"INSERT INTO jobs ({', '.join(_JOB_FIELDS)}) VALUES ({_placeholders(_JOB_FIELDS)}) "  # noqa: S608
            f"ON CONFLICT (id) DO UPDATE SET {updates}",
            _encode(job_columns(job)),
        )

    def _add_delivery(self, webhook_id: str, job_id: str) -> bool:
        cursor = self._connection().execute(
            "INSERT INTO deliveries (webhook_id, job_id, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT (webhook_id) DO NOTHING",
            (webhook_id, job_id, iso_text(utcnow())),
        )
        return cursor.rowcount == 1

    async def _write(self, step: Callable[..., T], /, *args: Any) -> T:
        return await self._writer.run(functools.partial(step, *args), within=self.timeout)

    async def _read(self, step: Callable[..., T], /, *args: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(step, *args))

    # -- the store ---------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        """Insert *job*; if a job with its id exists, leave it and return the existing one."""
        created = await self._write(self._create_step, job)
        # The one record nothing else could recover: make it survive a power loss too.
        await self._read(self._checkpoint)
        return created

    def _checkpoint(self) -> None:
        with self._errors():
            self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or whose prediction has this id."""
        return await self._read(self._find, job_id)

    async def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        """Record what the create answered (see :meth:`JobStore.attach_prediction`)."""
        return await self._write(self._attach_step, job_id, prediction)

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        """Record one delivery, once per ``webhook_id`` (see :meth:`JobStore.record_delivery`)."""
        return await self._write(self._deliver_step, delivery)

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
        return await self._write(
            self._transition_step, job_id, expected, new, error, prediction, attempt
        )

    async def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """Take a ``received`` job, or a ``processing`` one idle for *stale_after* seconds."""
        return await self._write(self._claim_step, job_id, stale_after)

    async def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs in any of *statuses* last updated before *updated_before*, oldest first."""
        clauses, parameters = ["1 = 1"], []
        if statuses is not None:
            values = [JobStatus(status).value for status in statuses]
            clauses.append(f"status IN ({', '.join('?' * len(values))})")
            parameters.extend(values)
        if updated_before is not None:
            clauses.append("updated_at < ?")
            parameters.append(iso_text(updated_before))
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(clauses)} ORDER BY updated_at, id LIMIT ?"  # noqa: S608
        rows = await self._read(self._query, sql, (*parameters, max(limit, 0)))
        return [job_from_columns(row) for row in rows]

    async def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool:
        """Copy *source* into the audio directory (streamed, then renamed into place) as
        the content's audio or its file *name*, unless a newer job's is stored already.

        Saving for the same job again replaces the file and its row: one copy is kept.
        """
        temporary = await self._read(self._copy_to_temporary, Path(source))
        try:
            saved, old = await self._write(self._save_audio_step, job, temporary, info, name)
        finally:
            await self._read(functools.partial(temporary.unlink, missing_ok=True))
        for file_name in old:
            await self._read(
                functools.partial((self.audio_dir / file_name).unlink, missing_ok=True)
            )
        return saved

    def _save_audio_step(
        self, job: Job, temporary: Path, info: AudioInfo, name: str | None
    ) -> tuple[bool, list[str]]:
        """Put the file in place and its row; returns whether saved, and files to delete."""
        key = (job.content_type, job.content_id)
        table, named = ("audio", "NULL") if name is None else ("audio_files", "name")
        rows = self._query(
            f"SELECT job_id, file_name, job_created_at, {named} AS name FROM {table} "  # noqa: S608
            "WHERE content_type = ? AND content_id = ?",
            key,
        )
        incoming = (iso_text(job.created_at), job.id)
        if any((row["job_created_at"] or "", row["job_id"]) > incoming for row in rows):
            return False, []  # a newer job's audio is there: keep it
        tag = "" if name is None else f"\0{name}"
        digest = hashlib.sha256(f"{key[0]}\0{key[1]}\0{job.id}{tag}".encode()).hexdigest()[:32]
        file_name = f"{digest}.{re.sub(r'[^A-Za-z0-9]', '', info.format)[:16] or 'audio'}"
        size = temporary.stat().st_size
        os.replace(temporary, self.audio_dir / file_name)
        row = (job.id, info.format, info.duration, size, file_name, iso_text(utcnow()),
               iso_text(job.created_at))  # fmt: skip
        connection = self._connection()
        if name is None:
            connection.execute("INSERT OR REPLACE INTO audio VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (*key, *row))  # fmt: skip
            replaced = rows
        else:
            # The named files of a content are one job's: an older job's make way.
            replaced = [r for r in rows if r["job_id"] != job.id or r["name"] == name]
            connection.execute(
                "DELETE FROM audio_files WHERE content_type = ? AND content_id = ? AND job_id != ?",
                (*key, job.id),
            )
            connection.execute(
                "INSERT OR REPLACE INTO audio_files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, name, *row),
            )
        return True, [r["file_name"] for r in replaced if r["file_name"] != file_name]

    def _copy_to_temporary(self, source: Path) -> Path:
        with self._errors():
            self.audio_dir.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=self.audio_dir, prefix=".incoming-")
            try:
                with source.open("rb") as reader, os.fdopen(handle, "wb") as writer:
                    shutil.copyfileobj(reader, writer, _COPY_CHUNK)
                    writer.flush()
                    os.fsync(writer.fileno())
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise
        return Path(name)

    async def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """The stored audio for this content (or its file *name*), or None.

        Raises:
            StorageError: the row exists but its file is gone or unreadable.
        """
        return await self._read(self._get_audio, content_type, content_id, name)

    def _get_audio(
        self, content_type: str, content_id: str, name: str | None
    ) -> StoredAudio | None:
        parameters: tuple[str, ...]
        if name is None:
            sql, parameters = (
                "SELECT * FROM audio WHERE content_type = ? AND content_id = ?",
                (content_type, content_id),
            )
        else:
            sql, parameters = (
                "SELECT * FROM audio_files WHERE content_type = ? AND content_id = ? AND name = ?",
                (content_type, content_id, name),
            )
        rows = self._query(sql, parameters)
        if not rows:
            return None
        row = rows[0]
        with self._errors():
            data = (self.audio_dir / row["file_name"]).read_bytes()
        return StoredAudio(
            content_type, content_id, row["job_id"], row["format"], row["duration"],
            row["size"], data, name,
        )  # fmt: skip

    async def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        await self._write(self._log_step, entry)

    def _log_step(self, entry: LogEntry) -> None:
        self._connection().execute(
            f"INSERT INTO logs ({', '.join(_LOG_FIELDS)}) "  # noqa: S608
            f"VALUES ({_placeholders(_LOG_FIELDS)}) ON CONFLICT (job_id, status) DO NOTHING",
            _encode(log_columns(entry)),
        )

    async def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        where, parameters = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        sql = f"SELECT * FROM logs {where} ORDER BY created_at, seq"  # noqa: S608
        return [log_from_columns(row) for row in await self._read(self._query, sql, parameters)]
