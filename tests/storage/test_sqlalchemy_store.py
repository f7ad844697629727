"""What only SQLAlchemyStore promises: engines, table names, drivers, and failing politely."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from replicate_audio.errors import StorageError
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import Delivery, RecordedEvent, SyncStore
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from storage.databases import drop_tables, unique_prefix, with_driver

JOB = Job(
    id="j1",
    prediction_id="p1",
    status=JobStatus.PENDING,
    content_type="sound_effect",
    content_id="7",
)
SUCCEEDED = Delivery(webhook_id="w1", prediction={"id": "p1", "status": "succeeded"})
STARTING = {"id": "p1", "status": "starting"}


def test_uses_a_given_engine_and_prefixes_tables(tmp_path: Path) -> None:
    """A passed engine is used as is (not disposed on close); tables carry the prefix."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with SQLAlchemyStore(engine, table_prefix="audio_") as store, SyncStore(store) as sync:
        sync.create_job(JOB)
    assert sorted(sa.inspect(engine).get_table_names()) == [
        "audio_audio",
        "audio_audio_files",
        "audio_deliveries",
        "audio_jobs",
        "audio_logs",
    ]
    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT id, prediction_id FROM audio_jobs")).one()
        assert tuple(row) == ("j1", "p1")
    engine.dispose()


def test_data_survives_reopening(tmp_path: Path) -> None:
    """A second store on the same database sees the first one's jobs and deliveries."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with SQLAlchemyStore(url) as store, SyncStore(store) as sync:
        sync.create_job(JOB)
        sync.record_delivery(SUCCEEDED)
    with SQLAlchemyStore(url) as store, SyncStore(store) as sync:
        assert sync.record_delivery(SUCCEEDED).duplicate
        assert sync.get_job("p1").status is JobStatus.RECEIVED  # type: ignore[union-attr]


def test_unreachable_database_is_a_storage_error() -> None:
    """A database that refuses connections raises StorageError (callers answer 5xx)."""
    with pytest.raises(StorageError):
        SQLAlchemyStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
def test_unreachable_database_is_a_storage_error_async(driver: str) -> None:
    """An async engine's refused connection raises StorageError at the first call."""
    store = SQLAlchemyStore(f"postgresql+{driver}://postgres@127.0.0.1:1/test")
    assert store.engine is None
    with pytest.raises(StorageError):
        anyio.run(store.get_job, "j1")
    anyio.run(store.aclose)


@pytest.mark.postgres
def test_bare_postgresql_url_uses_psycopg(postgres_url: str) -> None:
    """'postgresql://' gets the psycopg 3 driver rather than the absent psycopg2."""
    bare = sa.engine.make_url(postgres_url).set(drivername="postgresql")
    store = SQLAlchemyStore(bare.render_as_string(hide_password=False), table_prefix="ra_bare_")
    try:
        assert store.engine is not None
        assert store.engine.url.drivername == "postgresql+psycopg"
    finally:
        anyio.run(drop_tables, store)


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg_async"])
def test_async_url_makes_an_async_engine(postgres_url: str, driver: str) -> None:
    """An async driver's URL makes an AsyncEngine (``engine`` is None), which works within
    one event loop and is disposed by aclose."""
    store = SQLAlchemyStore(with_driver(postgres_url, driver), table_prefix=unique_prefix())
    assert store.engine is None
    assert store.async_engine is not None
    assert store.async_engine.url.drivername == f"postgresql+{driver}"

    async def use() -> None:
        try:
            assert await store.create_job(JOB) == JOB
            assert (await store.record_delivery(SUCCEEDED)).changed
            assert await store.get_job("p1") == await store.get_job("j1") is not None
        finally:
            await drop_tables(store)

    anyio.run(use)


@pytest.mark.postgres
def test_a_given_async_engine_is_not_disposed(postgres_url: str) -> None:
    """A passed AsyncEngine is used as is: aclose leaves it usable."""
    engine = create_async_engine(with_driver(postgres_url, "asyncpg"))
    store = SQLAlchemyStore(engine, table_prefix=unique_prefix())
    assert (store.engine, store.async_engine) == (None, engine)

    async def use() -> None:
        await store.create_job(JOB)
        await store.aclose()
        assert await store.get_job("j1") == JOB  # the engine still answers
        async with engine.begin() as connection:
            await connection.run_sync(store.metadata.drop_all)
        await engine.dispose()

    anyio.run(use)


@pytest.mark.parametrize(
    "paused",
    [
        pytest.param(lambda store: store.attach_prediction("j1", STARTING), id="attach"),
        pytest.param(
            lambda store: store.record_delivery(
                Delivery(webhook_id="w0", prediction=STARTING, job_id="j1")
            ),
            id="starting-delivery",
        ),
    ],
)
def test_a_write_read_before_another_commits_does_not_move_the_job_back(
    tmp_path: Path, paused: Callable[[SQLAlchemyStore], Any]
) -> None:
    """On SQLite (no row locks), a write that read the job before a 'succeeded' delivery
    committed does not then move the job back from received: the create's late answer,
    or a late 'starting' delivery, leaves it received."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    store = SQLAlchemyStore(engine)
    anyio.run(store.create_job, Job(id="j1", content_type="sound_effect", content_id="7"))
    armed, read, release = threading.Event(), threading.Event(), threading.Event()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def pause_between_reading_and_writing(*args: Any) -> None:
        statement: str = args[2]
        if armed.is_set() and statement.lstrip().startswith(("INSERT", "UPDATE")):
            armed.clear()
            read.set()
            assert release.wait(timeout=10)

    armed.set()
    late = threading.Thread(target=anyio.run, args=(lambda: paused(store),))
    late.start()
    succeeded = Delivery(
        webhook_id="w1", prediction={**STARTING, "status": "succeeded"}, job_id="j1"
    )
    early: list[RecordedEvent] = []
    racer = threading.Thread(
        target=lambda: early.append(anyio.run(store.record_delivery, succeeded))
    )
    try:
        assert read.wait(timeout=10)
        racer.start()
        # It commits now, unless the paused write holds a lock it waits for: then both
        # finish once that write goes on.
        racer.join(timeout=1)
    finally:
        release.set()
        late.join(timeout=10)
        racer.join(timeout=10)
    assert [(event.changed, event.job.status) for event in early] == [  # type: ignore[union-attr]
        (True, JobStatus.RECEIVED)
    ]
    final = anyio.run(store.get_job, "j1")
    assert final is not None
    assert (final.status, final.prediction_id) == (JobStatus.RECEIVED, "p1")
    store.close()
    engine.dispose()
