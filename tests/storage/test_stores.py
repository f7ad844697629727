"""The storage contract, run against every built-in store (memory, SQLite, SQLAlchemy)."""

from __future__ import annotations

import base64
import inspect
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from replicate_audio.config import ReplicateAudioConfig
from replicate_audio.errors import StorageError
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import (
    AudioInfo,
    AudioStore,
    Delivery,
    DeliveryOutcome,
    JobStore,
    LogEntry,
    RecordedEvent,
    ResultLog,
    Store,
    SyncStore,
)

S = JobStatus
RECORDED, DUPLICATE, NOT_OURS = DeliveryOutcome
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
STORE_METHODS = sorted(
    name for role in (JobStore, AudioStore, ResultLog) for name in vars(role) if name[0] != "_"
)


def job(job_id: str = "j1", **changes: Any) -> Job:
    """A job whose create has answered: pending, with prediction p1 (unless *changes* say)."""
    fields = {
        "id": job_id,
        "prediction_id": "p1",
        "status": S.PENDING,
        "content_type": "sound_effect",
        "content_id": "7",
    }
    return Job(**{**fields, **changes})


def payload(status: str, prediction_id: str = "p1") -> dict[str, Any]:
    return {"id": prediction_id, "status": status, "output": "https://replicate.delivery/a.wav"}


def delivery(webhook_id: str, status: str, *, prediction_id: str = "p1", **fields: Any) -> Delivery:
    """A delivery of the prediction in *status*; found by prediction id unless given job_id."""
    return Delivery(webhook_id=webhook_id, prediction=payload(status, prediction_id), **fields)


def seen(recorded: RecordedEvent) -> tuple[DeliveryOutcome, JobStatus | None, bool]:
    """What a delivery came to: its outcome, its job's status after it, whether it moved."""
    return recorded.outcome, recorded.job.status if recorded.job else None, recorded.changed


def test_satisfies_the_store_protocol(store: SyncStore) -> None:
    """Every built-in store is a Store (jobs, audio and log in one object), all async."""
    assert isinstance(store.store, Store)
    assert len(STORE_METHODS) == 11
    for name in STORE_METHODS:
        assert inspect.iscoroutinefunction(getattr(store.store, name)), name


def test_create_and_get_round_trip(store: SyncStore) -> None:
    """A created job reads back equal, config and prediction included, by its own id and
    by its prediction's."""
    config = ReplicateAudioConfig(model="a/b", input={"prompt": "door", "n": [1, 2]}, duration=3)
    original = job(config=config, prediction={"status": "starting"}, error="x", attempts=2)
    assert store.create_job(original) == original
    loaded = store.get_job("j1")
    assert loaded == original
    assert loaded is not None
    assert loaded.prediction == {"status": "starting"}
    assert loaded.created_at.tzinfo is not None
    assert store.get_job("p1") == original
    assert store.get_job("unknown") is None


def test_a_creating_job_round_trips_without_a_prediction(store: SyncStore) -> None:
    """A job recorded before its create (creating, no prediction id) reads back as such."""
    recorded = job(prediction_id=None, status=S.CREATING)
    store.create_job(recorded)
    assert store.get_job("j1") == recorded
    assert store.list_jobs(statuses=[S.CREATING]) == [recorded]


def test_create_job_returns_the_existing_job(store: SyncStore) -> None:
    """Creating a job whose id exists changes nothing and returns the stored one."""
    store.create_job(job(content_id="first"))
    assert store.create_job(job(content_id="second")).content_id == "first"
    assert store.get_job("j1").content_id == "first"  # type: ignore[union-attr]


def test_events_move_the_job_forward(store: SyncStore) -> None:
    """starting -> running, succeeded -> received, storing the latest prediction."""
    store.create_job(job())
    started = store.record_delivery(delivery("w1", "starting"))
    assert (seen(started), started.duplicate) == ((RECORDED, S.RUNNING, True), False)
    assert seen(store.record_delivery(delivery("w2", "succeeded"))) == (RECORDED, S.RECEIVED, True)
    assert store.get_job("j1").prediction == payload("succeeded")  # type: ignore[union-attr]


@pytest.mark.parametrize("by_job_id", [True, False], ids=["by-job-id", "by-prediction-id"])
def test_delivery_finds_its_job(store: SyncStore, by_job_id: bool) -> None:
    """A delivery finds its job by the job id of its URL, or without one by prediction id."""
    store.create_job(job())
    store.create_job(job("j2", prediction_id="p2", content_id="8"))
    found = store.record_delivery(delivery("w1", "starting", job_id="j1" if by_job_id else None))
    assert seen(found) == (RECORDED, S.RUNNING, True)
    assert found.job is not None
    assert (found.job.id, found.job.prediction_id) == ("j1", "p1")
    assert store.get_job("j2").status is S.PENDING  # type: ignore[union-attr]


def test_duplicate_delivery_changes_nothing(store: SyncStore) -> None:
    """A webhook id seen before is reported duplicate, even if its payload differs."""
    store.create_job(job())
    store.record_delivery(delivery("w1", "starting"))
    again = store.record_delivery(delivery("w1", "succeeded", job_id="j1"))
    assert (seen(again), again.duplicate) == ((DUPLICATE, S.RUNNING, False), True)
    assert store.get_job("j1").status is S.RUNNING  # type: ignore[union-attr]


def test_out_of_order_event_does_not_move_back(store: SyncStore) -> None:
    """A late 'processing' after 'succeeded' is recorded but leaves the job received."""
    store.create_job(job())
    store.record_delivery(delivery("w2", "succeeded"))
    late = store.record_delivery(delivery("w1", "processing"))
    assert (seen(late), late.duplicate) == ((RECORDED, S.RECEIVED, False), False)
    assert store.get_job("j1").prediction["status"] == "succeeded"  # type: ignore[union-attr,index]


@pytest.mark.parametrize("final", ["failed", "canceled", "aborted"])
def test_events_after_terminal_are_ignored(store: SyncStore, final: str) -> None:
    """Once failed, canceled or aborted, no delivery moves the job again."""
    store.create_job(job())
    store.record_delivery(delivery("w1", final))
    for number, status in enumerate(["starting", "succeeded", "failed", "canceled", "aborted"]):
        assert not store.record_delivery(delivery(f"late{number}", status)).changed
    assert store.get_job("j1").status is S(final)  # type: ignore[union-attr]


def test_second_success_does_not_take_a_job_from_its_worker(store: SyncStore) -> None:
    """A 'succeeded' under a new webhook id leaves a processing or dead job where it is."""
    store.create_job(job())
    store.record_delivery(delivery("w1", "succeeded"))
    store.claim_job("j1", stale_after=60)
    assert not store.record_delivery(delivery("w2", "succeeded")).changed
    assert store.claim_job("j1", stale_after=60) is None
    store.transition("j1", expected={S.PROCESSING}, new=S.DEAD, error="gave up")
    assert not store.record_delivery(delivery("w3", "succeeded")).changed
    assert store.get_job("j1").status is S.DEAD  # type: ignore[union-attr]


def test_unknown_job_is_not_remembered(store: SyncStore) -> None:
    """A delivery for a missing job is not ours, and its retry after create_job is recorded."""
    assert seen(store.record_delivery(delivery("w1", "succeeded"))) == (NOT_OURS, None, False)
    unknown = store.record_delivery(delivery("w1", "succeeded", job_id="nope"))
    assert seen(unknown) == (NOT_OURS, None, False)
    store.create_job(job())
    retried = store.record_delivery(delivery("w1", "succeeded"))
    assert (seen(retried), retried.duplicate) == ((RECORDED, S.RECEIVED, True), False)


def test_job_bound_to_another_prediction_is_not_ours(store: SyncStore) -> None:
    """A delivery naming a job whose prediction is another one is not ours, and is not
    remembered: the same webhook id for the right prediction is recorded afterwards."""
    store.create_job(job())
    other = store.record_delivery(delivery("w1", "succeeded", prediction_id="p2", job_id="j1"))
    assert seen(other) == (NOT_OURS, None, False)
    assert store.get_job("j1").status is S.PENDING  # type: ignore[union-attr]
    assert store.get_job("p2") is None
    right = store.record_delivery(delivery("w1", "succeeded", job_id="j1"))
    assert seen(right) == (RECORDED, S.RECEIVED, True)


@pytest.mark.parametrize("by_job_id", [True, False], ids=["by-job-id", "by-prediction-id"])
@pytest.mark.parametrize("content", [("background_music", "7"), ("sound_effect", "8")])
def test_delivery_for_other_content_is_not_ours(
    store: SyncStore, content: tuple[str, str], by_job_id: bool
) -> None:
    """A delivery whose URL names other content than its job's is not ours, and is not
    remembered: the same webhook id with the job's own content is recorded afterwards."""
    store.create_job(job())
    job_id = "j1" if by_job_id else None
    wrong = delivery(
        "w1", "succeeded", job_id=job_id, content_type=content[0], content_id=content[1]
    )
    assert seen(store.record_delivery(wrong)) == (NOT_OURS, None, False)
    assert store.get_job("j1").status is S.PENDING  # type: ignore[union-attr]
    right = delivery("w1", "succeeded", job_id=job_id, content_type="sound_effect", content_id="7")
    assert seen(store.record_delivery(right)) == (RECORDED, S.RECEIVED, True)


def test_early_delivery_attaches_its_prediction(store: SyncStore) -> None:
    """A delivery that outran the create (job still creating) attaches its prediction id and
    moves the job (succeeded -> received); the create's answer then keeps it received."""
    store.create_job(job(prediction_id=None, status=S.CREATING))
    early = store.record_delivery(delivery("w1", "succeeded", job_id="j1"))
    assert seen(early) == (RECORDED, S.RECEIVED, True)
    assert early.job is not None
    assert early.job.prediction_id == "p1"
    assert store.get_job("p1") == early.job
    attached = store.attach_prediction("j1", payload("starting"))
    assert attached is not None
    assert (attached.status, attached.prediction_id) == (S.RECEIVED, "p1")
    kept = store.get_job("j1")
    assert kept is not None
    assert (kept.status, kept.prediction) == (S.RECEIVED, payload("succeeded"))
    assert store.attach_prediction("j1", payload("starting", "p2")) is None


def test_early_delivery_of_a_prediction_another_job_has_is_not_ours(store: SyncStore) -> None:
    """A creating job cannot take a prediction id that another job already holds."""
    store.create_job(job())
    store.create_job(job("j2", prediction_id=None, status=S.CREATING))
    taken = store.record_delivery(delivery("w1", "succeeded", job_id="j2"))
    assert seen(taken) == (NOT_OURS, None, False)
    assert store.get_job("j2").prediction_id is None  # type: ignore[union-attr]
    assert store.attach_prediction("j2", payload("starting")) is None
    assert store.get_job("p1").id == "j1"  # type: ignore[union-attr]


def test_attach_prediction_moves_creating_to_pending(store: SyncStore) -> None:
    """attach_prediction sets the prediction id and moves creating -> pending, once; it
    refuses an unknown job, a prediction without an id, and a second prediction."""
    store.create_job(job(prediction_id=None, status=S.CREATING))
    attached = store.attach_prediction("j1", payload("starting"))
    assert attached is not None
    assert (attached.status, attached.prediction_id) == (S.PENDING, "p1")
    assert attached.prediction == payload("starting")
    assert store.get_job("p1") == attached
    assert store.attach_prediction("j1", payload("starting")) == attached
    assert store.attach_prediction("j1", payload("starting", "p2")) is None
    assert store.attach_prediction("nope", payload("starting", "p3")) is None
    store.create_job(job("j2", prediction_id=None, status=S.CREATING))
    assert store.attach_prediction("j2", {"status": "starting"}) is None
    assert store.get_job("j2").status is S.CREATING  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body", [{"id": "p1", "status": "exploded"}, {"id": "p1"}, {"id": "p1", "status": None}]
)
def test_unknown_prediction_status_is_recorded_without_a_move(
    store: SyncStore, body: dict[str, Any]
) -> None:
    """A status this library does not know (or none) is recorded once and moves nothing;
    refusing malformed payloads is the intake's work, before the store."""
    store.create_job(job())
    unknown = Delivery(webhook_id="w1", prediction=body)
    assert seen(store.record_delivery(unknown)) == (RECORDED, S.PENDING, False)
    assert store.get_job("j1").prediction is None  # type: ignore[union-attr]
    assert store.record_delivery(unknown).duplicate
    assert seen(store.record_delivery(delivery("w2", "starting"))) == (RECORDED, S.RUNNING, True)


def test_transition_is_compare_and_set(store: SyncStore) -> None:
    """transition moves only from an expected status, and only along allowed moves."""
    store.create_job(job())
    assert store.transition("j1", expected={S.RUNNING}, new=S.FAILED) is None
    assert store.transition("j1", expected={S.PENDING}, new=S.COMPLETED) is None
    failed = store.transition("j1", expected={S.PENDING, S.RUNNING}, new=S.FAILED, error="boom")
    assert failed is not None
    assert (failed.status, failed.error) == (S.FAILED, "boom")
    assert store.transition("j1", expected={S.FAILED}, new=S.RUNNING) is None
    assert store.transition("missing", expected={S.PENDING}, new=S.RUNNING) is None


def test_transition_stores_prediction_only_when_given(store: SyncStore) -> None:
    """transition replaces the prediction when passed one and keeps it otherwise."""
    store.create_job(job(prediction={"status": "starting"}))
    running = store.transition("j1", expected={S.PENDING}, new=S.RUNNING)
    assert running is not None
    assert running.prediction == {"status": "starting"}
    received = store.transition(
        "j1", expected={S.RUNNING}, new=S.RECEIVED, prediction={"status": "succeeded"}
    )
    assert received is not None
    assert store.get_job("j1").prediction == {"status": "succeeded"}  # type: ignore[union-attr]


def test_claim_takes_a_received_job_once(store: SyncStore) -> None:
    """claim_job: pending is not claimable; received is, once, with attempts counted."""
    store.create_job(job())
    assert store.claim_job("j1", stale_after=60) is None
    store.record_delivery(delivery("w1", "succeeded"))
    claimed = store.claim_job("j1", stale_after=60)
    assert claimed is not None
    assert (claimed.status, claimed.attempts) == (S.PROCESSING, 1)
    assert store.claim_job("j1", stale_after=60) is None
    assert store.claim_job("missing", stale_after=60) is None


def test_stale_processing_job_is_reclaimed(store: SyncStore) -> None:
    """A job left processing longer than stale_after can be claimed again."""
    store.create_job(job())
    store.record_delivery(delivery("w1", "succeeded"))
    first = store.claim_job("j1", stale_after=60)
    assert first is not None
    time.sleep(0.01)
    again = store.claim_job("j1", stale_after=0.001)
    assert again is not None
    assert again.attempts == 2
    assert again.updated_at > first.updated_at


def test_transition_with_an_attempt_is_fenced(store: SyncStore) -> None:
    """Given an attempt, transition moves the job only while no later claim has taken it:
    the first worker's renewal and completion lose once a second worker has re-claimed it."""
    store.create_job(job())
    store.record_delivery(delivery("w1", "succeeded"))
    first = store.claim_job("j1", stale_after=60)
    assert first is not None
    renewed = store.transition("j1", expected={S.PROCESSING}, new=S.PROCESSING, attempt=1)
    assert renewed is not None
    assert renewed.attempts == 1
    second = store.claim_job("j1", stale_after=0)
    assert second is not None
    assert second.attempts == 2
    for new in (S.PROCESSING, S.COMPLETED, S.DEAD, S.RECEIVED):
        assert store.transition("j1", expected={S.PROCESSING}, new=new, attempt=1) is None
    assert store.get_job("j1") == second
    done = store.transition("j1", expected={S.PROCESSING}, new=S.COMPLETED, attempt=2)
    assert done is not None
    assert (done.status, done.attempts) == (S.COMPLETED, 2)


def test_completed_job_cannot_be_claimed(store: SyncStore) -> None:
    """A finished job is never claimed, however old."""
    store.create_job(job())
    store.record_delivery(delivery("w1", "succeeded"))
    store.claim_job("j1", stale_after=60)
    assert store.transition("j1", expected={S.PROCESSING}, new=S.COMPLETED) is not None
    assert store.claim_job("j1", stale_after=0) is None


def test_list_jobs_filters_and_orders_oldest_first(store: SyncStore) -> None:
    """list_jobs filters by status and age, oldest update first, at most limit."""
    for job_id, minutes, status in [("b", 2, S.PENDING), ("a", 0, S.PENDING), ("c", 1, S.RUNNING)]:
        updated_at = T0 + timedelta(minutes=minutes)
        store.create_job(
            job(job_id, prediction_id=f"p{job_id}", status=status, updated_at=updated_at)
        )
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


WAV = AudioInfo(format="wav", duration=1.5, size=4, sample_rate=44100, channels=2)
MP3 = AudioInfo(format="mp3", duration=2.0, size=6, sample_rate=44100, channels=2)


def test_audio_round_trip_and_overwrite(store: SyncStore, tmp_path: Path) -> None:
    """Saved audio reads back with its metadata; a newer job's saved audio replaces it."""
    assert store.get_audio("sound_effect", "7") is None
    first_job, second_job = job(created_at=T0), job("j2", created_at=T0 + timedelta(seconds=1))
    assert store.save_audio(job=first_job, source=_audio_file(tmp_path, "a.wav", b"RIFF"), info=WAV)
    first = store.get_audio("sound_effect", "7")
    assert first is not None
    assert (first.job_id, first.format, first.duration, first.size) == ("j1", "wav", 1.5, 4)
    assert first.to_base64() == base64.b64encode(b"RIFF").decode()
    source = _audio_file(tmp_path, "b.mp3", b"ID3abc")
    assert store.save_audio(job=second_job, source=source, info=MP3)
    second = store.get_audio("sound_effect", "7")
    assert second is not None
    assert (second.job_id, second.format, second.data, second.size) == ("j2", "mp3", b"ID3abc", 6)
    assert store.get_audio("sound_effect", "8") is None


def test_same_job_saving_again_replaces_its_audio(store: SyncStore, tmp_path: Path) -> None:
    """A retried job saving again keeps one copy, the latest it saved."""
    assert store.save_audio(job=job(), source=_audio_file(tmp_path, "a.wav", b"RIFF"), info=WAV)
    assert store.save_audio(job=job(), source=_audio_file(tmp_path, "b.mp3", b"ID3abc"), info=MP3)
    stored = store.get_audio("sound_effect", "7")
    assert stored is not None
    assert (stored.job_id, stored.format, stored.data) == ("j1", "mp3", b"ID3abc")


@pytest.mark.parametrize("newer_by", ["created_at", "id"])
@pytest.mark.parametrize("order", ["older-first", "newer-first"])
def test_newest_jobs_audio_wins_in_either_order(
    store: SyncStore, tmp_path: Path, order: str, newer_by: str
) -> None:
    """Of two jobs for one piece of content, the newer one's audio is kept whichever saves
    last (newer: created later, or created at the same time with the greater id); the
    older job's save reports False once the newer one's is stored."""
    older = job("j-a", created_at=T0 + timedelta(seconds=1))
    if newer_by == "created_at":
        newer = job("j-0", prediction_id="p2", created_at=T0 + timedelta(seconds=2))
    else:
        newer = job("j-b", prediction_id="p2", created_at=older.created_at)
    assert newer.is_newer_than(older)
    old_source = _audio_file(tmp_path, "old.wav", b"RIFFold")
    new_source = _audio_file(tmp_path, "new.mp3", b"ID3new")
    if order == "older-first":
        assert store.save_audio(job=older, source=old_source, info=WAV)
        assert store.save_audio(job=newer, source=new_source, info=MP3)
    else:
        assert store.save_audio(job=newer, source=new_source, info=MP3)
        assert not store.save_audio(job=older, source=old_source, info=WAV)
    stored = store.get_audio("sound_effect", "7")
    assert stored is not None
    assert (stored.job_id, stored.format, stored.data) == (newer.id, "mp3", b"ID3new")


def test_named_files_are_kept_beside_the_contents_audio(store: SyncStore, tmp_path: Path) -> None:
    """Named files (stems) read back by name, each with its metadata, and leave the
    content's one audio (name None) alone."""
    assert store.save_audio(job=job(), source=_audio_file(tmp_path, "a.wav", b"RIFFmain"), info=WAV)
    for name, data in (("vocals", b"RIFFv"), ("drums", b"RIFFd")):
        source = _audio_file(tmp_path, f"{name}.wav", data)
        assert store.save_audio(job=job(), source=source, info=WAV, name=name)
    vocals, drums = (
        store.get_audio("sound_effect", "7", "vocals"),
        store.get_audio("sound_effect", "7", name="drums"),
    )
    assert vocals is not None
    assert drums is not None
    assert (vocals.name, vocals.data, vocals.job_id, vocals.format) == (
        "vocals",
        b"RIFFv",
        "j1",
        "wav",
    )
    assert (drums.name, drums.data) == ("drums", b"RIFFd")
    main = store.get_audio("sound_effect", "7")
    assert main is not None
    assert (main.name, main.data) == (None, b"RIFFmain")
    assert store.get_audio("sound_effect", "7", "bass") is None


@pytest.mark.parametrize("order", ["older-first", "newer-first"])
def test_named_files_of_a_content_are_the_newest_jobs(
    store: SyncStore, tmp_path: Path, order: str
) -> None:
    """Of two jobs saving stems for one content, only the newer job's files stay, whichever
    saves first: no mix of the two jobs' stems."""
    older = job("j-a", created_at=T0 + timedelta(seconds=1))
    newer = job("j-b", prediction_id="p2", created_at=T0 + timedelta(seconds=2))

    def save(who: Job, names: tuple[str, ...]) -> list[bool]:
        return [
            store.save_audio(
                job=who, source=_audio_file(tmp_path, f"{who.id}-{n}.wav", who.id.encode()),
                info=WAV, name=n,
            )
            for n in names
        ]  # fmt: skip

    if order == "older-first":
        assert save(older, ("vocals", "drums", "bass")) == [True] * 3
        assert save(newer, ("vocals", "drums")) == [True] * 2
    else:
        assert save(newer, ("vocals", "drums")) == [True] * 2
        assert save(older, ("vocals", "drums", "bass")) == [False] * 3
    kept = {n: store.get_audio("sound_effect", "7", n) for n in ("vocals", "drums", "bass")}
    assert {n: a.data if a else None for n, a in kept.items()} == {
        "vocals": b"j-b",
        "drums": b"j-b",
        "bass": None,
    }


def test_missing_audio_source_is_a_storage_error(store: SyncStore, tmp_path: Path) -> None:
    """Saving from a file that does not exist raises StorageError and stores nothing."""
    with pytest.raises(StorageError):
        store.save_audio(job=job(), source=tmp_path / "missing.wav", info=WAV)
    assert store.get_audio("sound_effect", "7") is None


def test_log_is_idempotent_per_job_and_status(store: SyncStore) -> None:
    """A second entry with the same job and status is dropped; entries list oldest first."""
    entry = LogEntry("j1", "sound_effect", "7", S.COMPLETED, "stored", 1.5, 10, created_at=T0)
    store.log_result(LogEntry("j1", "sound_effect", "7", S.DEAD, "gave up", created_at=T0))
    store.log_result(entry)
    store.log_result(LogEntry("j1", "sound_effect", "7", S.COMPLETED, "again", created_at=T0))
    store.log_result(LogEntry("j2", "sound_effect", "8", S.FAILED, "nope", created_at=T0))
    early = LogEntry("j3", "sound_effect", "9", S.FAILED, "x", created_at=T0 - timedelta(1))
    store.log_result(early)
    assert [(e.job_id, e.message) for e in store.list_logs("j1")] == [
        ("j1", "gave up"),
        ("j1", "stored"),
    ]
    assert store.list_logs("j1")[1] == entry
    assert [e.job_id for e in store.list_logs()] == ["j3", "j1", "j1", "j2"]
    assert store.list_logs("nobody") == []
