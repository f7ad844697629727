"""What only SQLiteStore promises: its file layout, schema version, and failing politely."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from replicate_audio.errors import ConfigurationError, StorageError
from replicate_audio.jobs import Job
from replicate_audio.storage.protocols import AudioInfo
from replicate_audio.storage.sqlite import SCHEMA_VERSION, SQLiteStore

INFO = AudioInfo(format="wav", duration=1.0, size=4, sample_rate=8000, channels=1)


def save(store: SQLiteStore, source: Path, info: AudioInfo = INFO) -> None:
    store.save_audio(
        content_type="sound_effect", content_id="7", job_id="p1", source=source, info=info
    )


def test_schema_version_and_wal(tmp_path: Path) -> None:
    """The file is in WAL mode and carries the schema version in user_version."""
    with SQLiteStore(tmp_path / "jobs.db") as store:
        store.get_job("p1")
    connection = sqlite3.connect(tmp_path / "jobs.db")
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer replicate-audio raises StorageError, not corruption."""
    connection = sqlite3.connect(tmp_path / "jobs.db")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with SQLiteStore(tmp_path / "jobs.db") as store, pytest.raises(StorageError, match="upgrade"):
        store.get_job("p1")


def test_data_survives_reopening(tmp_path: Path) -> None:
    """Jobs and audio written by one store are read by the next one on the same file."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    with SQLiteStore(tmp_path / "jobs.db") as store:
        store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
        save(store, tmp_path / "in.wav")
    with SQLiteStore(tmp_path / "jobs.db") as store:
        assert store.get_job("p1") is not None
        assert store.get_audio("sound_effect", "7").data == b"RIFF"  # type: ignore[union-attr]


def test_audio_files_beside_the_database(tmp_path: Path) -> None:
    """Audio goes to <db>.audio/; overwriting in another format leaves one file, no temp."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    (tmp_path / "in.mp3").write_bytes(b"ID3")
    with SQLiteStore(tmp_path / "jobs.db") as store:
        save(store, tmp_path / "in.wav")
        save(store, tmp_path / "in.mp3", AudioInfo("mp3", 1.0, 3, 8000, 1))
        assert store.audio_dir == tmp_path / "jobs.db.audio"
        files = list(store.audio_dir.iterdir())
        assert [f.suffix for f in files] == [".mp3"]
        assert files[0].read_bytes() == b"ID3"


def test_missing_audio_file_is_a_storage_error(tmp_path: Path) -> None:
    """A metadata row whose file was deleted raises StorageError instead of lying."""
    (tmp_path / "in.wav").write_bytes(b"RIFF")
    with SQLiteStore(tmp_path / "jobs.db", audio_dir=tmp_path / "audio") as store:
        save(store, tmp_path / "in.wav")
        for file in (tmp_path / "audio").iterdir():
            file.unlink()
        with pytest.raises(StorageError):
            store.get_audio("sound_effect", "7")


def test_failed_save_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A source that cannot be read leaves the audio directory empty."""
    with SQLiteStore(tmp_path / "jobs.db") as store:
        with pytest.raises(StorageError):
            save(store, tmp_path / "nope.wav")
        assert list(store.audio_dir.iterdir()) == []


def test_unusable_paths_fail_politely(tmp_path: Path) -> None:
    """':memory:' is a configuration error; an unopenable file is a StorageError."""
    with pytest.raises(ConfigurationError):
        SQLiteStore(":memory:")
    with pytest.raises(StorageError):
        SQLiteStore(tmp_path / "missing-dir" / "jobs.db").get_job("p1")


def test_closed_store_raises_storage_error(tmp_path: Path) -> None:
    """After close(), every call raises StorageError."""
    store = SQLiteStore(tmp_path / "jobs.db")
    store.get_job("p1")
    store.close()
    with pytest.raises(StorageError):
        store.get_job("p1")


def test_close_while_another_thread_queries(tmp_path: Path) -> None:
    """close() leaves a connection another live thread owns to that thread: its query in
    flight finishes, and its next call raises StorageError (a shutdown racing a sweep)."""
    import threading

    store = SQLiteStore(tmp_path / "jobs.db")
    store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
    started, outcome = threading.Event(), []

    def query_until_closed() -> None:
        try:
            while True:
                store.list_jobs(limit=100)
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
    assert [str(error) for error in outcome] == [f"SQLite store {store.path} is closed"] * 4


def _claim_in_forked_child(store: SQLiteStore) -> None:
    os._exit(0 if store.claim_job("p1", stale_after=60) is not None else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    """A store used before fork keeps working in the child (no shared connection)."""
    with SQLiteStore(tmp_path / "jobs.db") as store:
        store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
        store.record_event("w1", "p1", {"status": "succeeded"})
        context = multiprocessing.get_context("fork")
        child = context.Process(target=_claim_in_forked_child, args=(store,))
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        assert store.get_job("p1").attempts == 1  # type: ignore[union-attr]


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    """Each short-lived thread's connection is closed once its thread is gone, not kept."""
    import threading

    store = SQLiteStore(tmp_path / "jobs.sqlite3")
    for _ in range(50):
        thread = threading.Thread(target=store.get_job, args=("nope",))
        thread.start()
        thread.join()
    store.get_job("nope")
    assert len(store._connections) <= 2
    store.close()
