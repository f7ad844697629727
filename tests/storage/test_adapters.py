"""Crossing between sync and async stores: SyncStore over an async store, a user's blocking
store wrapped once for the async core, and a user's async store taken as it is."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from replicate_audio import InvalidPayloadError, Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import (
    AudioInfo,
    BlockingStore,
    Delivery,
    DeliveryOutcome,
    LogEntry,
    MemoryStore,
    RecordedEvent,
    Store,
    StoredAudio,
    SyncStore,
    ThreadedStore,
    as_store,
    from_blocking,
)

JOB = Job(id="j1", content_type="sound_effect", content_id="7")
STARTING = {"id": "p1", "status": "starting"}
INFO = AudioInfo(format="wav", duration=1.0, size=4, sample_rate=8000, channels=1)


class LoopRecordingStore(MemoryStore):
    """A MemoryStore that notes the event loop and thread of every get_job."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    async def get_job(self, job_id: str) -> Job | None:
        self.seen.append((asyncio.get_running_loop(), threading.current_thread()))
        return await super().get_job(job_id)


class UserBlockingStore:
    """A user's store with plain blocking methods (here over a MemoryStore), noting the
    thread of every call."""

    def __init__(self) -> None:
        self._store = SyncStore(MemoryStore())
        self.threads: set[int] = set()
        #: When set, get_job waits for it (a slow query), once it has set ``entered``.
        self.slow: threading.Event | None = None
        self.entered = threading.Event()

    def _note(self) -> SyncStore:
        self.threads.add(threading.get_ident())
        return self._store

    def close(self) -> None:
        self._store.close()

    def create_job(self, job: Job) -> Job:
        return self._note().create_job(job)

    def get_job(self, job_id: str) -> Job | None:
        if self.slow is not None:
            self.entered.set()
            assert self.slow.wait(timeout=10), "the event loop was blocked"
        return self._note().get_job(job_id)

    def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        return self._note().attach_prediction(job_id, prediction)

    def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        return self._note().record_delivery(delivery)

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
        return self._note().transition(
            job_id,
            expected=expected,
            new=new,
            error=error,
            prediction=prediction,
            attempt=attempt,
        )

    def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        return self._note().claim_job(job_id, stale_after=stale_after)

    def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        return self._note().list_jobs(statuses=statuses, updated_before=updated_before, limit=limit)

    def save_audio(self, *, job: Job, source: Path, info: AudioInfo) -> bool:
        return self._note().save_audio(job=job, source=source, info=info)

    def get_audio(self, content_type: str, content_id: str) -> StoredAudio | None:
        return self._note().get_audio(content_type, content_id)

    def log_result(self, entry: LogEntry) -> None:
        self._note().log_result(entry)

    def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        return self._note().list_logs(job_id)


class UserAsyncStore:
    """A user's async store that is no subclass of ours: async methods over a MemoryStore."""

    def __init__(self) -> None:
        self._store = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def create_job(self, job: Job) -> Job:
        return await self._store.create_job(job)

    async def get_job(self, job_id: str) -> Job | None:
        return await self._store.get_job(job_id)

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        return await self._store.record_delivery(delivery)


def test_sync_store_serves_every_call_from_one_loop_thread() -> None:
    """SyncStore starts one event loop thread and runs every call there, however many
    calls and from whichever plain threads; close() stops it, and a later call starts
    another."""
    recording = LoopRecordingStore()
    store = SyncStore(recording)
    try:
        store.create_job(JOB)
        assert store.get_job("j1") == JOB
        assert store.get_job("nope") is None
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(store.get_job, ["j1"] * 8)) == [JOB] * 8
        loops = {loop for loop, _ in recording.seen}
        threads = {thread for _, thread in recording.seen}
        assert len(recording.seen) == 10
        assert len(loops) == len(threads) == 1
        assert threading.current_thread() not in threads
    finally:
        store.close()
    (first_thread,) = threads
    assert not first_thread.is_alive()
    with store:
        assert store.get_job("j1") == JOB
    assert recording.seen[-1][0] not in loops


def _get_in_forked_child(store: SyncStore) -> None:
    os._exit(0 if store.get_job("j1") == JOB else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sync_store_used_before_fork_works_in_the_child() -> None:
    """A SyncStore whose loop thread started before a fork (a pre-forking server, a worker
    pool) answers in the child, where that thread does not exist, instead of hanging."""
    with SyncStore(MemoryStore()) as store:
        store.create_job(JOB)
        child = multiprocessing.get_context("fork").Process(
            target=_get_in_forked_child, args=(store,)
        )
        child.start()
        child.join(timeout=10)
        if child.exitcode is None:
            child.kill()
            child.join()
        assert child.exitcode == 0


def test_sync_store_is_a_blocking_store() -> None:
    """SyncStore has the blocking protocol's methods, so as_store treats it as blocking."""
    with SyncStore(MemoryStore()) as store:
        assert isinstance(store, BlockingStore)
        wrapped = as_store(store)
        assert isinstance(wrapped, ThreadedStore)
        assert wrapped.blocking is store


def test_a_users_blocking_store_is_wrapped_once() -> None:
    """as_store / from_blocking wrap a blocking store in an async Store; wrapping the
    wrapper again changes nothing."""
    user = UserBlockingStore()
    try:
        wrapped = as_store(user)
        assert isinstance(wrapped, ThreadedStore)
        assert isinstance(wrapped, Store)
        assert wrapped.blocking is user
        assert as_store(wrapped) is wrapped
        assert from_blocking(user).blocking is user  # type: ignore[attr-defined]
    finally:
        user.close()


def test_a_users_blocking_store_serves_the_whole_protocol(tmp_path: Path) -> None:
    """Every method of a wrapped blocking store is awaited from the event loop and runs on
    a worker thread, never the loop's own."""
    user = UserBlockingStore()
    wrapped = from_blocking(user)
    source = tmp_path / "in.wav"
    source.write_bytes(b"RIFF")
    entry = LogEntry("j1", "sound_effect", "7", JobStatus.COMPLETED, "stored")

    async def use() -> int:
        assert await wrapped.create_job(JOB) == JOB
        attached = await wrapped.attach_prediction("j1", STARTING)
        assert attached is not None
        assert attached.status is JobStatus.PENDING
        succeeded = Delivery(webhook_id="w1", prediction={"id": "p1", "status": "succeeded"})
        recorded = await wrapped.record_delivery(succeeded)
        assert (recorded.outcome, recorded.changed) == (DeliveryOutcome.RECORDED, True)
        assert await wrapped.get_job("p1") == recorded.job
        claimed = await wrapped.claim_job("j1", stale_after=60)
        assert claimed is not None
        assert claimed.attempts == 1
        assert await wrapped.save_audio(job=claimed, source=source, info=INFO)
        stored = await wrapped.get_audio("sound_effect", "7")
        assert stored is not None
        assert stored.data == b"RIFF"
        await wrapped.log_result(entry)
        assert await wrapped.list_logs("j1") == [entry]
        done = await wrapped.transition(
            "j1", expected=[JobStatus.PROCESSING], new=JobStatus.COMPLETED, attempt=1
        )
        assert done is not None
        assert await wrapped.list_jobs(statuses=[JobStatus.COMPLETED]) == [done]
        return threading.get_ident()

    try:
        loop_thread = anyio.run(use)
        assert user.threads
        assert loop_thread not in user.threads
    finally:
        user.close()


def test_a_slow_blocking_store_does_not_block_the_event_loop() -> None:
    """While a wrapped blocking call waits, the event loop runs other tasks: here the task
    that lets the call finish."""
    user = UserBlockingStore()
    wrapped = from_blocking(user)
    user.create_job(JOB)
    slow = user.slow = threading.Event()
    answers: list[Job | None] = []

    async def query() -> None:
        answers.append(await wrapped.get_job("j1"))

    async def use() -> None:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(query)
                # This task runs while the call waits: it is the one to let it finish.
                assert await anyio.to_thread.run_sync(user.entered.wait, 10)
                slow.set()

    try:
        anyio.run(use)
        assert answers == [JOB]
    finally:
        user.close()


def test_a_users_async_store_is_taken_as_it_is() -> None:
    """as_store returns an async store unchanged, built-in or the user's own."""
    memory = MemoryStore()
    assert as_store(memory) is memory
    user = UserAsyncStore()
    assert as_store(user) is user  # type: ignore[arg-type]
    assert anyio.run(user.create_job, JOB) == JOB


def test_the_facade_wraps_a_blocking_store_once() -> None:
    """ReplicateAudio(store=...) keeps an async store and wraps a blocking one once; its
    blocking_store() is one SyncStore over the store it awaits."""
    user = UserBlockingStore()
    try:
        user.create_job(JOB)
        audio = ReplicateAudio(Settings(), store=user, sweep_interval=0)
        assert isinstance(audio.store, ThreadedStore)
        assert audio.store.blocking is user
        assert anyio.run(audio.get_job, "j1") == JOB
        assert audio.blocking_store() is audio.blocking_store()
        assert audio.blocking_store().store is audio.store
        audio.blocking_store().close()
        mine = UserAsyncStore()
        assert ReplicateAudio(Settings(), store=mine, sweep_interval=0).store is mine  # type: ignore[arg-type]
    finally:
        user.close()


def test_a_delivery_needs_a_prediction_id() -> None:
    """A Delivery without a string prediction id is refused when it is made, before any
    store could attach an empty id to a job."""
    for prediction in ({"status": "succeeded"}, {"id": "", "status": "succeeded"}, {"id": 7}):
        with pytest.raises(InvalidPayloadError):
            Delivery(webhook_id="m1", prediction=prediction)
