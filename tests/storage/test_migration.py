"""Databases made by schema version 1 (see data/make_schema_v1.py) open in place: every job
keeps its old id, which becomes its prediction id, with its deliveries, audio and log."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa

from replicate_audio.config import ReplicateAudioConfig
from replicate_audio.jobs import Job, JobStatus, new_job_id
from replicate_audio.storage import AudioInfo, Delivery, DeliveryOutcome, LogEntry, SQLiteStore
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from replicate_audio.storage.sqlite import SCHEMA_VERSION
from storage.databases import unique_prefix, with_driver

DATA = Path(__file__).parent / "data"
V1_SQLITE = DATA / "schema-v1.sqlite3"
V1_POSTGRES = DATA / "schema-v1.postgresql.sql"
(V1_WAV,) = Path(f"{V1_SQLITE}.audio").glob("*.wav")
PENDING, RUNNING, DONE = (
    "pendingpredictionid0000001",
    "runningpredictionid0000002",
    "donepredictionid0000000003",
)
CONFIG = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5", input={"prompt": "rain", "duration": 2}, duration=1.0
)
NEW_PREDICTION = "newpredictionid00000000004"
LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)


async def check_v1_data(store: SQLiteStore | SQLAlchemyStore, tmp_path: Path) -> Job:
    """Everything the version-1 database holds reads back and works through *store*, and a
    new job works beside it; returns the new job."""
    jobs = {job.id: job for job in await store.list_jobs()}
    assert {job_id: (job.prediction_id, job.status) for job_id, job in jobs.items()} == {
        PENDING: (PENDING, JobStatus.PENDING),
        RUNNING: (RUNNING, JobStatus.RUNNING),
        DONE: (DONE, JobStatus.COMPLETED),
    }
    for job in jobs.values():
        assert job.config == CONFIG
        assert await store.get_job(job.id) == job
    assert jobs[DONE].attempts == 1
    assert jobs[DONE].prediction == {
        "id": DONE,
        "status": "succeeded",
        "output": "https://replicate.delivery/x/out.wav",
    }

    # Its deliveries are remembered; a webhook URL of version 1 has no job id.
    processing = {"id": RUNNING, "status": "processing"}
    again = await store.record_delivery(Delivery(webhook_id="msg_run", prediction=processing))
    assert again.duplicate
    succeeded = {"id": RUNNING, "status": "succeeded", "output": "https://replicate.delivery/y.wav"}
    moved = await store.record_delivery(
        Delivery(
            webhook_id="msg_new", prediction=succeeded, content_type="sound_effect", content_id="2"
        )
    )
    assert (moved.outcome, moved.changed) == (DeliveryOutcome.RECORDED, True)
    assert moved.job is not None
    assert (moved.job.id, moved.job.status) == (RUNNING, JobStatus.RECEIVED)

    stored = await store.get_audio("background_music", "3")
    assert stored is not None
    assert (stored.job_id, stored.format, stored.duration, stored.size) == (DONE, "wav", 0.1, 1644)
    assert stored.data == V1_WAV.read_bytes()
    logs = await store.list_logs()
    assert [(entry.job_id, entry.status, entry.message) for entry in logs] == [
        (DONE, JobStatus.COMPLETED, "stored")
    ]

    # The stored audio knows how old its job is: an older job's audio does not replace it.
    source = tmp_path / "new.wav"
    source.write_bytes(b"RIFFnew")
    info = AudioInfo("wav", 0.5, 7, 8000, 1)
    older = Job(
        id=new_job_id(), content_type="background_music", content_id="3", created_at=LONG_AGO
    )
    assert not await store.save_audio(job=older, source=source, info=info)

    # New jobs: recorded before their create, then attached, beside the old ones.
    new = await store.create_job(
        Job(id=new_job_id(), content_type="background_music", content_id="3", config=CONFIG)
    )
    assert (new.status, new.prediction_id) == (JobStatus.CREATING, None)
    attached = await store.attach_prediction(new.id, {"id": NEW_PREDICTION, "status": "starting"})
    assert attached is not None
    assert (attached.status, attached.prediction_id) == (JobStatus.PENDING, NEW_PREDICTION)
    assert await store.get_job(NEW_PREDICTION) == attached
    assert await store.save_audio(job=attached, source=source, info=info)
    assert (await store.get_audio("background_music", "3")).job_id == new.id  # type: ignore[union-attr]
    entry = LogEntry(new.id, "background_music", "3", JobStatus.COMPLETED, "stored")
    await store.log_result(entry)
    assert (await store.list_logs())[-1] == entry
    return attached


async def check_reopened(store: SQLiteStore | SQLAlchemyStore, new: Job) -> None:
    """A second open changed nothing: the old jobs and the new one read back as they were."""
    assert await store.get_job(NEW_PREDICTION) == new
    assert {job.id: job.prediction_id for job in await store.list_jobs()} == {
        PENDING: PENDING,
        RUNNING: RUNNING,
        DONE: DONE,
        new.id: NEW_PREDICTION,
    }
    assert (await store.get_job(RUNNING)).status is JobStatus.RECEIVED  # type: ignore[union-attr]
    assert (await store.get_audio("background_music", "3")).job_id == new.id  # type: ignore[union-attr]
    assert len(await store.list_logs()) == 2


def sqlite_schema(path: Path) -> tuple[int, list[Any]]:
    """The file's schema version and every table and index definition."""
    connection = sqlite3.connect(path)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        layout = connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        return version, layout.fetchall()
    finally:
        connection.close()


def table_layout(url: str, prefix: str) -> dict[str, Any]:
    """Every column and index of the tables with *prefix*."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            table: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
                sorted(
                    (i["name"], i["column_names"], i["unique"])
                    for i in inspector.get_indexes(table)
                ),
            )
            for table in sorted(inspector.get_table_names())
            if table.startswith(prefix)
        }
    finally:
        engine.dispose()


def test_sqlite_file_of_version_1_is_migrated_in_place(tmp_path: Path) -> None:
    """SQLiteStore opens a version-1 file (a copy, with its audio folder) at the current
    schema version, keeping every job, delivery, audio file and log entry; opening it again
    is a no-op."""
    path = tmp_path / "v1.sqlite3"
    shutil.copy(V1_SQLITE, path)
    shutil.copytree(f"{V1_SQLITE}.audio", f"{path}.audio")
    assert sqlite_schema(path)[0] == 1

    async def first_open() -> Job:
        with SQLiteStore(path) as store:
            return await check_v1_data(store, tmp_path)

    new = anyio.run(first_open)
    version, layout = sqlite_schema(path)
    assert version == SCHEMA_VERSION == 3
    assert ("index", "jobs_prediction_id") in {(kind, name) for kind, name, _ in layout}

    async def second_open() -> None:
        with SQLiteStore(path) as store:
            await check_reopened(store, new)

    anyio.run(second_open)
    assert sqlite_schema(path) == (version, layout)


def test_sqlite_file_of_version_2_gains_the_named_files_table(tmp_path: Path) -> None:
    """A version-2 file (today's schema less ``audio_files``, which version 3 added) opens at
    the current version, its audio intact, and takes named files (stems)."""
    path = tmp_path / "v2.sqlite3"
    main = Job(id=new_job_id(), prediction_id="p2", content_type="stems", content_id="1")
    info = AudioInfo("wav", 1.0, 4, 44100, 2)
    source = tmp_path / "a.wav"
    source.write_bytes(b"RIFF")

    async def make_v2() -> None:
        with SQLiteStore(path) as store:
            await store.create_job(main)
            assert await store.save_audio(job=main, source=source, info=info)

    anyio.run(make_v2)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("DROP TABLE audio_files")
        connection.execute("PRAGMA user_version = 2")
    connection.close()

    async def reopen() -> None:
        with SQLiteStore(path) as store:
            kept = await store.get_audio("stems", "1")
            assert kept is not None
            assert kept.data == b"RIFF"
            assert await store.save_audio(job=main, source=source, info=info, name="vocals")
            vocals = await store.get_audio("stems", "1", "vocals")
            assert vocals is not None
            assert vocals.name == "vocals"

    anyio.run(reopen)
    assert sqlite_schema(path)[0] == SCHEMA_VERSION


def v1_rows(scratch: Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of the version-1 SQLite file (read from a copy in *scratch*), as
    SQLAlchemyStore's version-1 tables hold them (audio in a column, times as datetimes)."""
    connection = sqlite3.connect(shutil.copy(V1_SQLITE, scratch / "rows.sqlite3"))
    connection.row_factory = sqlite3.Row
    try:
        rows = {
            table: [dict(row) for row in connection.execute(f"SELECT * FROM {table}")]
            for table in ("jobs", "deliveries", "audio", "logs")
        }
    finally:
        connection.close()
    for job in rows["jobs"]:
        job.update(
            config=json.loads(job["config"]), prediction=json.loads(job["prediction"] or "null")
        )
    for delivery in rows["deliveries"]:
        delivery["created_at"] = delivery.pop("received_at")
    for audio in rows["audio"]:
        del audio["file_name"]
        audio.update(data=V1_WAV.read_bytes(), created_at=audio.pop("updated_at"))
    for table_rows in rows.values():
        for row in table_rows:
            row.update(
                {name: datetime.fromisoformat(row[name]) for name in row if name.endswith("_at")}
            )
    return rows


def test_sqlalchemy_sqlite_tables_of_version_1_are_migrated_in_place(tmp_path: Path) -> None:
    """SQLAlchemyStore on SQLite opens its version-1 tables (this version's, without
    jobs.prediction_id, its index and audio.job_created_at) in place; reopening is a no-op."""
    url, prefix = f"sqlite:///{tmp_path / 'app.db'}", "v1fixture_"
    engine = sa.create_engine(url)
    with SQLAlchemyStore(url, table_prefix=prefix) as made:  # this version's tables, then
        tables = {name.removeprefix(prefix): table for name, table in made.metadata.tables.items()}
    with engine.begin() as connection:  # less what version 2 added
        for statement in (
            f"DROP INDEX {prefix}jobs_prediction_id",
            f"ALTER TABLE {prefix}jobs DROP COLUMN prediction_id",
            f"ALTER TABLE {prefix}audio DROP COLUMN job_created_at",
        ):
            connection.exec_driver_sql(statement)
        for name, rows in v1_rows(tmp_path).items():
            connection.execute(tables[name].insert(), rows)

    async def open_and(check: Any, *args: Any) -> Any:
        with SQLAlchemyStore(url, table_prefix=prefix) as store:
            return await check(store, *args)

    new = anyio.run(open_and, check_v1_data, tmp_path)
    migrated = table_layout(url, prefix)
    assert ("job_created_at", "DATETIME", True) in migrated[f"{prefix}audio"][0]
    assert (f"{prefix}jobs_prediction_id", ["prediction_id"], 1) in migrated[f"{prefix}jobs"][1]
    anyio.run(open_and, check_reopened, new)
    assert table_layout(url, prefix) == migrated
    engine.dispose()


@pytest.fixture
def v1_postgres_tables(postgres_url: str) -> Iterator[str]:
    """The version-1 PostgreSQL tables, loaded under a prefix of their own; the prefix."""
    prefix = unique_prefix()
    engine = sa.create_engine(postgres_url)
    script = V1_POSTGRES.read_text().replace("v1fixture_", prefix)
    with engine.begin() as connection:
        connection.exec_driver_sql(script)
    try:
        yield prefix
    finally:
        names = ", ".join(f"{prefix}{table}" for table in ("jobs", "deliveries", "audio", "logs"))
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {names}")
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg", "asyncpg", "psycopg_async"])
def test_postgresql_tables_of_version_1_are_migrated_in_place(
    postgres_url: str, v1_postgres_tables: str, driver: str, tmp_path: Path
) -> None:
    """SQLAlchemyStore, sync or async, opens version-1 tables (a pg_dump) in place, keeping
    every job, delivery, audio and log entry; opening them again is a no-op."""
    prefix, url = v1_postgres_tables, with_driver(postgres_url, driver)
    before = table_layout(postgres_url, prefix)
    assert "prediction_id" not in [name for name, _, _ in before[f"{prefix}jobs"][0]]

    async def first_open() -> Job:
        store = SQLAlchemyStore(url, table_prefix=prefix)
        try:
            return await check_v1_data(store, tmp_path)
        finally:
            await store.aclose()

    new = anyio.run(first_open)
    layout = table_layout(postgres_url, prefix)
    assert ("prediction_id", "VARCHAR(255)", True) in layout[f"{prefix}jobs"][0]
    assert (f"{prefix}jobs_prediction_id", ["prediction_id"], True) in layout[f"{prefix}jobs"][1]
    assert "job_created_at" in [name for name, _, _ in layout[f"{prefix}audio"][0]]

    async def second_open() -> None:
        store = SQLAlchemyStore(url, table_prefix=prefix)
        try:
            await check_reopened(store, new)
        finally:
            await store.aclose()

    anyio.run(second_open)
    assert table_layout(postgres_url, prefix) == layout
