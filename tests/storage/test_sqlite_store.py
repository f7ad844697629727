"""What only SQLiteStore promises: its file layout, schema version, its one writer, and
failing politely."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from replicate_audio.errors import ConfigurationError, StorageError
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import AudioInfo, Delivery, DeliveryOutcome, SyncStore
from replicate_audio.storage.sqlite import SCHEMA_VERSION, SQLiteStore

INFO = AudioInfo(format="wav", duration=1.0, size=4, sample_rate=8000, channels=1)
JOB = Job(
    id="j1",
    prediction_id="p1",
    status=JobStatus.PENDING,
    content_type="sound_effect",
    content_id="7",
)


@contextmanager
def sqlite_store(path: Path, **options: Any) -> Iterator[SyncStore]:
    """A SQLiteStore on *path* seen through SyncStore, both closed afterwards."""
    with SQLiteStore(path, **options) as store, SyncStore(store) as sync:
        yield sync


def save(store: SyncStore, source: Path, info: AudioInfo = INFO, job: Job = JOB) -> bool:
    return store.save_audio(job=job, source=source, info=info)


def delivery(webhook_id: str, status: str, prediction_id: str = "p1") -> Delivery:
    return Delivery(webhook_id=webhook_id, prediction={"id": prediction_id, "status": status})


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for *condition* to hold, failing after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{condition} did not hold within {timeout} s"
        time.sleep(0.01)


def test_schema_version_and_wal(tmp_path: Path) -> None:
    """The file is in WAL mode and carries the schema version in user_version."""
    with sqlite_store(tmp_path / "jobs.db") as store:
        store.get_job("p1")
    connection = sqlite3.connect(tmp_path / "jobs.db")
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer replicate-audio raises StorageError, not corruption."""
    connection = sqlite3.connect(tmp_path / "jobs.db")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with sqlite_store(tmp_path / "jobs.db") as store, pytest.raises(StorageError, match="upgrade"):
        store.get_job("p1")


def test_data_survives_reopening(tmp_path: Path) -> None:
    """Jobs, deliveries and audio written by one store are read by the next one on the file."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    with sqlite_store(tmp_path / "jobs.db") as store:
        store.create_job(JOB)
        store.record_delivery(delivery("w1", "starting"))
        save(store, tmp_path / "in.wav")
    with sqlite_store(tmp_path / "jobs.db") as store:
        assert store.get_job("p1") == store.get_job("j1") is not None
        assert store.record_delivery(delivery("w1", "starting")).duplicate
        assert store.get_audio("sound_effect", "7").data == b"RIFF"  # type: ignore[union-attr]


def test_audio_files_beside_the_database(tmp_path: Path) -> None:
    """Audio goes to <db>.audio/; overwriting in another format leaves one file, no temp."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    (tmp_path / "in.mp3").write_bytes(b"ID3")
    with sqlite_store(tmp_path / "jobs.db") as store:
        save(store, tmp_path / "in.wav")
        save(store, tmp_path / "in.mp3", AudioInfo("mp3", 1.0, 3, 8000, 1))
        audio_dir = store.store.audio_dir  # type: ignore[attr-defined]
        assert audio_dir == tmp_path / "jobs.db.audio"
        files = list(audio_dir.iterdir())
        assert [f.suffix for f in files] == [".mp3"]
        assert files[0].read_bytes() == b"ID3"


def test_refused_older_audio_leaves_no_file(tmp_path: Path) -> None:
    """Audio of an older job than the one stored is refused, and leaves no file behind."""
    (tmp_path / "new.wav").write_bytes(b"RIFFnew")
    (tmp_path / "old.mp3").write_bytes(b"ID3old")
    older = Job(
        id="j0",
        content_type="sound_effect",
        content_id="7",
        created_at=JOB.created_at - timedelta(seconds=1),
    )
    with sqlite_store(tmp_path / "jobs.db") as store:
        assert save(store, tmp_path / "new.wav")
        assert not save(store, tmp_path / "old.mp3", AudioInfo("mp3", 1.0, 6, 8000, 1), older)
        files = list(store.store.audio_dir.iterdir())  # type: ignore[attr-defined]
        assert [file.read_bytes() for file in files] == [b"RIFFnew"]


def test_missing_audio_file_is_a_storage_error(tmp_path: Path) -> None:
    """A metadata row whose file was deleted raises StorageError instead of lying."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    with sqlite_store(tmp_path / "jobs.db", audio_dir=tmp_path / "audio") as store:
        save(store, tmp_path / "in.wav")
        for file in (tmp_path / "audio").iterdir():
            file.unlink()
        with pytest.raises(StorageError):
            store.get_audio("sound_effect", "7")


def test_failed_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A source that cannot be read leaves the audio directory empty."""
    with sqlite_store(tmp_path / "jobs.db") as store:
        with pytest.raises(StorageError):
            save(store, tmp_path / "nope.wav")
        assert list(store.store.audio_dir.iterdir()) == []  # type: ignore[attr-defined]


def test_unusable_paths_fail_politely(tmp_path: Path) -> None:
    """':memory:' is a configuration error; an unopenable file is a StorageError."""
    with pytest.raises(ConfigurationError):
        SQLiteStore(":memory:")
    with sqlite_store(tmp_path / "missing-dir" / "jobs.db") as store, pytest.raises(StorageError):
        store.get_job("p1")


def test_closed_store_raises_storage_error(tmp_path: Path) -> None:
    """After close(), every call raises StorageError, reads and writes alike."""
    store = SQLiteStore(tmp_path / "jobs.db")
    with SyncStore(store) as sync:
        sync.get_job("p1")
        store.close()
        with pytest.raises(StorageError):
            sync.get_job("p1")
        with pytest.raises(StorageError):
            sync.create_job(JOB)


def test_close_while_another_thread_queries(tmp_path: Path) -> None:
    """close() leaves a connection another live thread owns to that thread: its query in
    flight finishes, and its next call raises StorageError (a shutdown racing a sweep)."""
    store = SQLiteStore(tmp_path / "jobs.db")
    sync = SyncStore(store)
    sync.create_job(JOB)
    started, outcome = threading.Event(), []

    def query_until_closed() -> None:
        try:
            while True:
                sync.list_jobs(limit=100)
                started.set()
        except StorageError as error:
            outcome.append(error)

    threads = [threading.Thread(target=query_until_closed) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(timeout=10)
    store.close()
    for thread in threads:
        thread.join(timeout=10)
    sync.close()
    assert [str(error) for error in outcome] == [f"SQLite store {store.path} is closed"] * 4


def _claim_in_forked_child(store: SQLiteStore) -> None:
    # The parent's SyncStore loop thread is not in the child: run a loop of its own.
    claimed = anyio.run(lambda: store.claim_job("j1", stale_after=60))
    os._exit(0 if claimed is not None else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    """A store used before fork keeps working in the child (no shared connection, its own
    writer thread)."""
    with SQLiteStore(tmp_path / "jobs.db") as raw, SyncStore(raw) as store:
        store.create_job(JOB)
        store.record_delivery(delivery("w1", "succeeded"))
        context = multiprocessing.get_context("fork")
        child = context.Process(target=_claim_in_forked_child, args=(raw,))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        assert store.get_job("j1").attempts == 1  # type: ignore[union-attr]


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    """Each short-lived thread's connection is closed once its thread is gone, not kept:
    here the worker threads of event loops that ran one call each."""
    store = SQLiteStore(tmp_path / "jobs.sqlite3")
    before = set(threading.enumerate())
    for _ in range(50):
        thread = threading.Thread(target=anyio.run, args=(store.get_job, "nope"))
        thread.start()
        thread.join()
    wait_until(lambda: set(threading.enumerate()) <= before)  # their workers are gone too
    anyio.run(store.get_job, "nope")
    assert len(store._connections) <= 2
    store.close()


def test_writer_commits_many_concurrent_deliveries(tmp_path: Path) -> None:
    """200 deliveries recorded at once from one event loop, through the one writer thread,
    are all committed and answered; their redeliveries are all duplicates."""
    count = 200
    jobs = [
        Job(
            id=f"j{n}",
            prediction_id=f"p{n}",
            status=JobStatus.PENDING,
            content_type="sound_effect",
            content_id=str(n),
        )
        for n in range(count)
    ]

    async def deliver_all(store: SQLiteStore) -> list[tuple[DeliveryOutcome, bool]]:
        answers: list[tuple[DeliveryOutcome, bool]] = []

        async def record(news: Delivery) -> None:
            recorded = await store.record_delivery(news)
            answers.append((recorded.outcome, recorded.changed))

        async with anyio.create_task_group() as group:
            for job in jobs:
                group.start_soon(store.create_job, job)
        async with anyio.create_task_group() as group:
            for n in range(count):
                group.start_soon(record, delivery(f"w{n}", "succeeded", f"p{n}"))
        return answers

    with SQLiteStore(tmp_path / "jobs.db") as store:
        assert anyio.run(deliver_all, store) == [(DeliveryOutcome.RECORDED, True)] * count
        received = anyio.run(lambda: store.list_jobs(statuses=[JobStatus.RECEIVED], limit=1000))
        assert sorted(job.id for job in received) == sorted(job.id for job in jobs)
        assert anyio.run(deliver_all, store) == [(DeliveryOutcome.DUPLICATE, False)] * count


def test_a_write_waits_at_most_timeout_for_another_connections_lock(tmp_path: Path) -> None:
    """While another connection holds SQLite's write lock, a write fails with StorageError
    after about ``timeout`` seconds, a read still answers at once, and once the lock is
    released the same write succeeds."""
    path = tmp_path / "jobs.db"
    with sqlite_store(path, timeout=0.5) as store:
        store.create_job(JOB)  # the schema is made before the lock is taken
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(StorageError):
                store.record_delivery(delivery("w1", "succeeded"))
            waited = time.monotonic() - started
            assert 0.4 <= waited < 1.5, waited
            started = time.monotonic()
            assert store.get_job("j1") == JOB
            assert time.monotonic() - started < 0.5
        finally:
            other.rollback()
            other.close()
        recorded = store.record_delivery(delivery("w1", "succeeded"))
        assert (recorded.outcome, recorded.changed) == (DeliveryOutcome.RECORDED, True)


def _open_at_once(path: str, barrier: Any) -> str:
    barrier.wait()
    try:
        with SQLiteStore(path) as store:
            job = Job(id=f"j{os.getpid()}", content_type="sound_effect", content_id="1")
            anyio.run(store.create_job, job)
            anyio.run(store.get_job, job.id)
    except StorageError as error:
        return str(error)
    return "ok"


def test_processes_opening_a_new_file_at_once_all_get_it(tmp_path: Path) -> None:
    """Processes that open one new file and write to it at the same moment (gunicorn
    workers each loading the app) all get a working store: switching to WAL while another
    holds the file is refused at once ("database is locked", no busy handler), and the
    store retries within its timeout. (Without the retry this failed 2 runs in 3.)"""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        for attempt in range(30):
            path = str(tmp_path / f"race-{attempt}.sqlite3")
            barrier = manager.Barrier(4)
            assert pool.starmap(_open_at_once, [(path, barrier)] * 4) == ["ok"] * 4
