"""The storage contract, run against every built-in store (memory, SQLite, SQLAlchemy)."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from replicate_audio.config import ReplicateAudioConfig
from replicate_audio.errors import InvalidPayloadError, JobNotFoundError, StorageError
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage.memory import MemoryStore
from replicate_audio.storage.protocols import AudioInfo, LogEntry, Store
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from replicate_audio.storage.sqlite import SQLiteStore

AnyStore = MemoryStore | SQLiteStore | SQLAlchemyStore

S = JobStatus
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def job(job_id: str = "p1", **changes: Any) -> Job:
    return Job(**{"id": job_id, "content_type": "sound_effect", "content_id": "7", **changes})


def payload(status: str) -> dict[str, Any]:
    return {"id": "p1", "status": status, "output": "https://replicate.delivery/a.wav"}


def test_satisfies_the_store_protocol(store: AnyStore) -> None:
    """Every built-in store is a Store (jobs, audio and log in one object)."""
    assert isinstance(store, Store)


def test_create_and_get_round_trip(store: AnyStore) -> None:
    """A created job reads back equal, config and prediction included."""
    config = ReplicateAudioConfig(model="a/b", input={"prompt": "door", "n": [1, 2]}, duration=3)
    original = job(config=config, prediction={"status": "starting"}, error="x", attempts=2)
    assert store.create_job(original) == original
    loaded = store.get_job("p1")
    assert loaded == original
    assert loaded is not None
    assert loaded.prediction == {"status": "starting"}
    assert loaded.created_at.tzinfo is not None
    assert store.get_job("unknown") is None


def test_create_job_returns_the_existing_job(store: AnyStore) -> None:
    """Creating a job whose id exists changes nothing and returns the stored one."""
    store.create_job(job(content_id="first"))
    assert store.create_job(job(content_id="second")).content_id == "first"
    assert store.get_job("p1").content_id == "first"  # type: ignore[union-attr]


def test_events_move_the_job_forward(store: AnyStore) -> None:
    """starting -> running, succeeded -> received, storing the latest prediction."""
    store.create_job(job())
    started = store.record_event("w1", "p1", payload("starting"))
    assert (started.job.status, started.changed, started.duplicate) == (S.RUNNING, True, False)
    done = store.record_event("w2", "p1", payload("succeeded"))
    assert (done.job.status, done.changed) == (S.RECEIVED, True)
    assert store.get_job("p1").prediction == payload("succeeded")  # type: ignore[union-attr]


def test_duplicate_delivery_changes_nothing(store: AnyStore) -> None:
    """A webhook id seen before is reported duplicate, even if its payload differs."""
    store.create_job(job())
    store.record_event("w1", "p1", payload("starting"))
    again = store.record_event("w1", "p1", payload("succeeded"))
    assert (again.duplicate, again.changed, again.job.status) == (True, False, S.RUNNING)
    assert store.get_job("p1").status is S.RUNNING  # type: ignore[union-attr]


def test_out_of_order_event_does_not_move_back(store: AnyStore) -> None:
    """A late 'processing' after 'succeeded' is recorded but leaves the job received."""
    store.create_job(job())
    store.record_event("w2", "p1", payload("succeeded"))
    late = store.record_event("w1", "p1", payload("processing"))
    assert (late.duplicate, late.changed, late.job.status) == (False, False, S.RECEIVED)
    assert store.get_job("p1").prediction["status"] == "succeeded"  # type: ignore[union-attr,index]


@pytest.mark.parametrize("final", ["failed", "canceled"])
def test_events_after_terminal_are_ignored(store: AnyStore, final: str) -> None:
    """Once failed or canceled, no delivery moves the job again."""
    store.create_job(job())
    store.record_event("w1", "p1", payload(final))
    for number, status in enumerate(["starting", "succeeded", "failed", "canceled"]):
        assert not store.record_event(f"late{number}", "p1", payload(status)).changed
    assert store.get_job("p1").status is S(final)  # type: ignore[union-attr]


def test_second_success_does_not_take_a_job_from_its_worker(store: AnyStore) -> None:
    """A 'succeeded' under a new webhook id leaves a processing or dead job where it is."""
    store.create_job(job())
    store.record_event("w1", "p1", payload("succeeded"))
    store.claim_job("p1", stale_after=60)
    assert not store.record_event("w2", "p1", payload("succeeded")).changed
    assert store.claim_job("p1", stale_after=60) is None
    store.transition("p1", expected={S.PROCESSING}, new=S.DEAD, error="gave up")
    assert not store.record_event("w3", "p1", payload("succeeded")).changed
    assert store.get_job("p1").status is S.DEAD  # type: ignore[union-attr]


def test_unknown_job_is_not_remembered(store: AnyStore) -> None:
    """An event for a missing job raises, and its retry after create_job is recorded."""
    with pytest.raises(JobNotFoundError):
        store.record_event("w1", "p1", payload("succeeded"))
    store.create_job(job())
    retried = store.record_event("w1", "p1", payload("succeeded"))
    assert (retried.duplicate, retried.changed, retried.job.status) == (False, True, S.RECEIVED)


@pytest.mark.parametrize("body", [{"status": "exploded"}, {}, {"status": None}])
def test_unknown_prediction_status_is_refused(store: AnyStore, body: dict[str, Any]) -> None:
    """A payload without a Replicate status raises InvalidPayloadError and records nothing."""
    store.create_job(job())
    with pytest.raises(InvalidPayloadError):
        store.record_event("w1", "p1", body)
    assert not store.record_event("w1", "p1", payload("starting")).duplicate


def test_transition_is_compare_and_set(store: AnyStore) -> None:
    """transition moves only from an expected status, and only along allowed moves."""
    store.create_job(job())
    assert store.transition("p1", expected={S.RUNNING}, new=S.FAILED) is None
    assert store.transition("p1", expected={S.PENDING}, new=S.COMPLETED) is None
    failed = store.transition("p1", expected={S.PENDING, S.RUNNING}, new=S.FAILED, error="boom")
    assert failed is not None
    assert (failed.status, failed.error) == (S.FAILED, "boom")
    assert store.transition("p1", expected={S.FAILED}, new=S.RUNNING) is None
    assert store.transition("missing", expected={S.PENDING}, new=S.RUNNING) is None


def test_transition_stores_prediction_only_when_given(store: AnyStore) -> None:
    """transition replaces the prediction when passed one and keeps it otherwise."""
    store.create_job(job(prediction={"status": "starting"}))
    running = store.transition("p1", expected={S.PENDING}, new=S.RUNNING)
    assert running is not None
    assert running.prediction == {"status": "starting"}
    received = store.transition(
        "p1", expected={S.RUNNING}, new=S.RECEIVED, prediction={"status": "succeeded"}
    )
    assert received is not None
    assert store.get_job("p1").prediction == {"status": "succeeded"}  # type: ignore[union-attr]


def test_claim_takes_a_received_job_once(store: AnyStore) -> None:
    """claim_job: pending is not claimable; received is, once, with attempts counted."""
    store.create_job(job())
    assert store.claim_job("p1", stale_after=60) is None
    store.record_event("w1", "p1", payload("succeeded"))
    claimed = store.claim_job("p1", stale_after=60)
    assert claimed is not None
    assert (claimed.status, claimed.attempts) == (S.PROCESSING, 1)
    assert store.claim_job("p1", stale_after=60) is None
    assert store.claim_job("missing", stale_after=60) is None


def test_stale_processing_job_is_reclaimed(store: AnyStore) -> None:
    """A job left processing longer than stale_after can be claimed again."""
    store.create_job(job())
    store.record_event("w1", "p1", payload("succeeded"))
    first = store.claim_job("p1", stale_after=60)
    assert first is not None
    time.sleep(0.01)
    again = store.claim_job("p1", stale_after=0.001)
    assert again is not None
    assert again.attempts == 2
    assert again.updated_at > first.updated_at


def test_transition_with_an_attempt_is_fenced(store: AnyStore) -> None:
    """Given an attempt, transition moves the job only while no later claim has taken it:
    the first worker's renewal and completion lose once a second worker has re-claimed it."""
    store.create_job(job())
    store.record_event("w1", "p1", payload("succeeded"))
    first = store.claim_job("p1", stale_after=60)
    assert first is not None
    renewed = store.transition("p1", expected={S.PROCESSING}, new=S.PROCESSING, attempt=1)
    assert renewed is not None
    assert renewed.attempts == 1
    second = store.claim_job("p1", stale_after=0)
    assert second is not None
    assert second.attempts == 2
    for new in (S.PROCESSING, S.COMPLETED, S.DEAD, S.RECEIVED):
        assert store.transition("p1", expected={S.PROCESSING}, new=new, attempt=1) is None
    assert store.get_job("p1") == second
    done = store.transition("p1", expected={S.PROCESSING}, new=S.COMPLETED, attempt=2)
    assert done is not None
    assert (done.status, done.attempts) == (S.COMPLETED, 2)


def test_completed_job_cannot_be_claimed(store: AnyStore) -> None:
    """A finished job is never claimed, however old."""
    store.create_job(job())
    store.record_event("w1", "p1", payload("succeeded"))
    store.claim_job("p1", stale_after=60)
    assert store.transition("p1", expected={S.PROCESSING}, new=S.COMPLETED) is not None
    assert store.claim_job("p1", stale_after=0) is None


def test_list_jobs_filters_and_orders_oldest_first(store: AnyStore) -> None:
    """list_jobs filters by status and age, oldest update first, at most limit."""
    for job_id, minutes, status in [("b", 2, S.PENDING), ("a", 0, S.PENDING), ("c", 1, S.RUNNING)]:
        store.create_job(job(job_id, status=status, updated_at=T0 + timedelta(minutes=minutes)))
    assert [j.id for j in store.list_jobs()] == ["a", "c", "b"]
    assert [j.id for j in store.list_jobs(statuses=[S.PENDING])] == ["a", "b"]
    assert [j.id for j in store.list_jobs(updated_before=T0 + timedelta(minutes=2))] == ["a", "c"]
    naive = datetime(2024, 5, 1, 12, 1, 30)  # taken as UTC
    assert [j.id for j in store.list_jobs(updated_before=naive)] == ["a", "c"]
    assert [j.id for j in store.list_jobs(limit=1)] == ["a"]
    assert store.list_jobs(statuses=[]) == []


def _audio_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_audio_round_trip_and_overwrite(store: AnyStore, tmp_path: Path) -> None:
    """Saved audio reads back with its metadata; saving again keeps only the new copy."""
    assert store.get_audio("sound_effect", "7") is None
    info = AudioInfo(format="wav", duration=1.5, size=4, sample_rate=44100, channels=2)
    store.save_audio(
        content_type="sound_effect", content_id="7", job_id="p1",
        source=_audio_file(tmp_path, "a.wav", b"RIFF"), info=info,
    )  # fmt: skip
    first = store.get_audio("sound_effect", "7")
    assert first is not None
    assert (first.job_id, first.format, first.duration, first.size) == ("p1", "wav", 1.5, 4)
    assert first.to_base64() == base64.b64encode(b"RIFF").decode()
    mp3 = AudioInfo(format="mp3", duration=2.0, size=6, sample_rate=44100, channels=2)
    store.save_audio(
        content_type="sound_effect", content_id="7", job_id="p2",
        source=_audio_file(tmp_path, "b.mp3", b"ID3abc"), info=mp3,
    )  # fmt: skip
    second = store.get_audio("sound_effect", "7")
    assert second is not None
    assert (second.job_id, second.format, second.data, second.size) == ("p2", "mp3", b"ID3abc", 6)
    assert store.get_audio("sound_effect", "8") is None


def test_missing_audio_source_is_a_storage_error(store: AnyStore, tmp_path: Path) -> None:
    """Saving from a file that does not exist raises StorageError and stores nothing."""
    info = AudioInfo(format="wav", duration=1.5, size=4, sample_rate=44100, channels=2)
    with pytest.raises(StorageError):
        store.save_audio(
            content_type="sound_effect", content_id="7", job_id="p1",
            source=tmp_path / "missing.wav", info=info,
        )  # fmt: skip
    assert store.get_audio("sound_effect", "7") is None


def test_log_is_idempotent_per_job_and_status(store: AnyStore) -> None:
    """A second entry with the same job and status is dropped; entries list oldest first."""
    entry = LogEntry("p1", "sound_effect", "7", S.COMPLETED, "stored", 1.5, 10, created_at=T0)
    store.log_result(LogEntry("p1", "sound_effect", "7", S.DEAD, "gave up", created_at=T0))
    store.log_result(entry)
    store.log_result(LogEntry("p1", "sound_effect", "7", S.COMPLETED, "again", created_at=T0))
    store.log_result(LogEntry("p2", "sound_effect", "8", S.FAILED, "nope", created_at=T0))
    early = LogEntry("p3", "sound_effect", "9", S.FAILED, "x", created_at=T0 - timedelta(1))
    store.log_result(early)
    assert [(e.job_id, e.message) for e in store.list_logs("p1")] == [
        ("p1", "gave up"),
        ("p1", "stored"),
    ]
    assert store.list_logs("p1")[1] == entry
    assert [e.job_id for e in store.list_logs()] == ["p3", "p1", "p1", "p2"]
    assert store.list_logs("nobody") == []
