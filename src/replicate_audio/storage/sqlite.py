"""The embedded default store: one SQLite file (WAL) for jobs and logs, audio files beside it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, StorageError
from ..jobs import Job, JobStatus, utcnow
from ._records import iso_text, job_columns, job_from_columns, log_columns, log_from_columns
from ._serial import SerialJobStore
from .protocols import AudioInfo, LogEntry, StoredAudio

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = 1
_BUSY_TIMEOUT = 10.0  # seconds a writer waits for another writer before giving up
_COPY_CHUNK = 1 << 20

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, content_type TEXT NOT NULL, content_id TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, error TEXT, config TEXT,
        prediction TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS jobs_status_updated_at ON jobs (status, updated_at)",
    """CREATE TABLE IF NOT EXISTS deliveries (
        webhook_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, received_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audio (
        content_type TEXT NOT NULL, content_id TEXT NOT NULL, job_id TEXT NOT NULL,
        format TEXT NOT NULL, duration REAL NOT NULL, size INTEGER NOT NULL,
        file_name TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (content_type, content_id))""",
    """CREATE TABLE IF NOT EXISTS logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,
        content_type TEXT NOT NULL, content_id TEXT NOT NULL, status TEXT NOT NULL,
        message TEXT NOT NULL, duration REAL, size INTEGER, created_at TEXT NOT NULL,
        UNIQUE (job_id, status))""",
)
_JOB_FIELDS = ["id", "content_type", "content_id", "status", "attempts", "error", "config",
               "prediction", "created_at", "updated_at"]  # fmt: skip
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

    Safe to share between threads (one connection per thread) and between processes on
    one machine (WAL, and ``BEGIN IMMEDIATE`` around every read-decide-write). Tables are
    created on first use.

    Args:
        path: the database file; created if missing (its directory must exist).
        audio_dir: where audio files go; default ``<path>.audio/`` beside the database.

    Example:
        >>> import tempfile, pathlib
        >>> from replicate_audio.jobs import Job
        >>> store = SQLiteStore(pathlib.Path(tempfile.mkdtemp()) / "jobs.db")
        >>> store.create_job(Job(id="p1", content_type="sound_effect", content_id="7")).id
        'p1'
        >>> store.close()
    """

    def __init__(
        self, path: str | os.PathLike[str], *, audio_dir: str | os.PathLike[str] | None = None
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            raise ConfigurationError(
                "path", "SQLiteStore needs a file that every thread can open; use MemoryStore"
            )
        self.path = Path(path)
        self.audio_dir = Path(audio_dir) if audio_dir is not None else Path(f"{self.path}.audio")
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

    def close(self) -> None:
        """Close the store: every later call raises :class:`StorageError`.

        The connections of this thread and of finished threads are closed here. A connection
        that another live thread owns may be in the middle of a query, so it is left to that
        thread, which closes it on its next call (one that never calls again leaves it to the
        garbage collector).
        """
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

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        # A forked child must not touch its parent's connections: it opens its own.
        if connection is not None and self._local.pid == os.getpid():
            if not self._closed:
                return connection
            self._local.connection = None
        with self._lock, self._errors():
            self._set_aside_inherited()
            if self._closed:
                me = threading.current_thread()  # close() left this thread's connection to it
                self._release(lambda thread: thread is me or not thread.is_alive())
                raise StorageError(f"SQLite store {self.path} is closed")
            # isolation_level=None: we issue BEGIN ourselves; check_same_thread=False only
            # so that close() may close the connections of other threads.
            connection = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._release(lambda thread: not thread.is_alive())
            self._connections.append((threading.current_thread(), connection))
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            if not self._schema_ready:
                self._create_schema(connection)
                self._schema_ready = True
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
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        connection = self._connection()
        with self._errors():
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    def _query(self, sql: str, parameters: Any = ()) -> list[dict[str, Any]]:
        with self._errors():
            rows = self._connection().execute(sql, parameters).fetchall()
        return [dict(zip(row.keys(), row, strict=True)) for row in rows]

    def _load_job(self, job_id: str) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_columns(rows[0]) if rows else None

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

    def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        return self._load_job(job_id)

    def list_jobs(
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
        return [job_from_columns(row) for row in self._query(sql, (*parameters, max(limit, 0)))]

    def save_audio(
        self, *, content_type: str, content_id: str, job_id: str, source: Path, info: AudioInfo
    ) -> None:
        """Copy *source* into the audio directory (streamed, then renamed into place).

        Saving the same content again replaces the file and its row: one copy is kept.
        """
        key = hashlib.sha256(f"{content_type}\0{content_id}".encode()).hexdigest()[:32]
        file_name = f"{key}.{re.sub(r'[^A-Za-z0-9]', '', info.format)[:16] or 'audio'}"
        with self._errors():
            self.audio_dir.mkdir(parents=True, exist_ok=True)
            temporary = self._copy_to_temporary(Path(source))
            size = temporary.stat().st_size
            try:
                with self._exclusive():
                    old = self._query(
                        "SELECT file_name FROM audio WHERE content_type = ? AND content_id = ?",
                        (content_type, content_id),
                    )
                    os.replace(temporary, self.audio_dir / file_name)
                    self._connection().execute(
                        "INSERT OR REPLACE INTO audio VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (content_type, content_id, job_id, info.format, info.duration, size,
                         file_name, iso_text(utcnow())),
                    )  # fmt: skip
            finally:
                temporary.unlink(missing_ok=True)
            if old and old[0]["file_name"] != file_name:
                (self.audio_dir / old[0]["file_name"]).unlink(missing_ok=True)

    def _copy_to_temporary(self, source: Path) -> Path:
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

    def get_audio(self, content_type: str, content_id: str) -> StoredAudio | None:
        """The stored audio for this content, or None.

        Raises:
            StorageError: the row exists but its file is gone or unreadable.
        """
        rows = self._query(
            "SELECT * FROM audio WHERE content_type = ? AND content_id = ?",
            (content_type, content_id),
        )
        if not rows:
            return None
        row = rows[0]
        with self._errors():
            data = (self.audio_dir / row["file_name"]).read_bytes()
        return StoredAudio(
            content_type, content_id, row["job_id"], row["format"], row["duration"],
            row["size"], data,
        )  # fmt: skip

    def log_result(self, entry: LogEntry) -> None:
        """Append *entry*; a second entry with the same job id and status is ignored."""
        with self._exclusive():
            self._connection().execute(
                f"INSERT INTO logs ({', '.join(_LOG_FIELDS)}) "  # noqa: S608
                f"VALUES ({_placeholders(_LOG_FIELDS)}) ON CONFLICT (job_id, status) DO NOTHING",
                _encode(log_columns(entry)),
            )

    def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """Entries, oldest first, for one job or all."""
        where, parameters = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        rows = self._query(f"SELECT * FROM logs {where} ORDER BY created_at, seq", parameters)  # noqa: S608
        return [log_from_columns(row) for row in rows]
