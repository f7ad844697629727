"""Crossing between sync and async stores, each wrapped once: a blocking store for the
async core (:func:`from_blocking`), an async one for code with no loop (:class:`SyncStore`)."""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Collection
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ..jobs import Job, JobStatus
from .protocols import (
    AudioInfo,
    BlockingStore,
    Delivery,
    LogEntry,
    RecordedEvent,
    Store,
    StoredAudio,
)

__all__ = ["SyncStore", "ThreadedStore", "as_store", "from_blocking"]

T = TypeVar("T")


def is_async_store(store: object) -> bool:
    """Whether *store*'s methods are ``async def`` (checked on ``record_delivery``)."""
    return inspect.iscoroutinefunction(getattr(store, "record_delivery", None))


def from_blocking(store: BlockingStore) -> Store:
    """Wrap a store with plain blocking methods once, so the core can await it: each call
    runs on a worker thread, so the event loop never waits on it.

    Example:
        >>> from replicate_audio.storage import SyncStore, MemoryStore
        >>> blocking = SyncStore(MemoryStore())
        >>> is_async_store(from_blocking(blocking))
        True
        >>> blocking.close()
    """
    return ThreadedStore(store)


def as_store(store: Store | BlockingStore) -> Store:
    """*store* itself when it is async, else :func:`from_blocking` of it (once).

    Example:
        >>> from replicate_audio.storage import MemoryStore
        >>> store = MemoryStore()
        >>> as_store(store) is store
        True
    """
    if is_async_store(store):
        return store  # type: ignore[return-value]
    return from_blocking(store)  # type: ignore[arg-type]


class ThreadedStore:
    """A blocking store seen through the async protocol; see :func:`from_blocking`."""

    def __init__(self, store: BlockingStore) -> None:
        #: The wrapped store.
        self.blocking = store

    async def _call(self, method: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

    async def create_job(self, job: Job) -> Job:
        """See :meth:`JobStore.create_job`."""
        return await self._call(self.blocking.create_job, job)

    async def get_job(self, job_id: str) -> Job | None:
        """See :meth:`JobStore.get_job`."""
        return await self._call(self.blocking.get_job, job_id)

    async def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        """See :meth:`JobStore.attach_prediction`."""
        return await self._call(self.blocking.attach_prediction, job_id, prediction)

    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        """See :meth:`JobStore.record_delivery`."""
        return await self._call(self.blocking.record_delivery, delivery)

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
        """See :meth:`JobStore.transition`."""
        return await self._call(
            self.blocking.transition, job_id, expected=expected, new=new, error=error,
            prediction=prediction, attempt=attempt,
        )  # fmt: skip

    async def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """See :meth:`JobStore.claim_job`."""
        return await self._call(self.blocking.claim_job, job_id, stale_after=stale_after)

    async def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """See :meth:`JobStore.list_jobs`."""
        return await self._call(
            self.blocking.list_jobs, statuses=statuses, updated_before=updated_before, limit=limit
        )

    async def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool:
        """See :meth:`AudioStore.save_audio`."""
        named = {} if name is None else {"name": name}  # a store from before names: none
        return await self._call(
            self.blocking.save_audio, job=job, source=source, info=info, **named
        )

    async def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """See :meth:`AudioStore.get_audio`."""
        named = () if name is None else (name,)
        return await self._call(self.blocking.get_audio, content_type, content_id, *named)

    async def log_result(self, entry: LogEntry) -> None:
        """See :meth:`ResultLog.log_result`."""
        await self._call(self.blocking.log_result, entry)

    async def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """See :meth:`ResultLog.list_logs`."""
        return await self._call(self.blocking.list_logs, job_id)


def _forget_portal(reference: weakref.ref[SyncStore]) -> None:
    store = reference()
    if store is not None:
        store._forget_portal()


class SyncStore:
    """An async store seen through blocking methods, for code with no event loop (scripts,
    the command line, tests). Calls run on one event-loop thread of its own, started on
    first use and stopped by :meth:`close`; no loop is started per call.

    Never call it from inside an event loop: await the store itself there.

    Example:
        >>> from replicate_audio.jobs import Job
        >>> from replicate_audio.storage import MemoryStore
        >>> store = SyncStore(MemoryStore())
        >>> store.create_job(Job(id="j1", content_type="sound_effect", content_id="7")).id
        'j1'
        >>> store.get_job("j1").status
        <JobStatus.CREATING: 'creating'>
        >>> store.close()
    """

    def __init__(self, store: Store) -> None:
        #: The wrapped async store.
        self.store = store
        self._lock = threading.Lock()
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._inherited: list[object] = []
        if hasattr(os, "register_at_fork"):
            # A forked child has no copy of the loop thread (waiting on it would hang) and
            # may have copied the lock while held: it starts afresh on its first call.
            reference = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forget_portal(reference))

    def run(self, function: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """Run another async function on this wrapper's loop thread, and wait for it (code
        that shares the store's connections, such as the facade's own methods)."""
        result: T = self._call(function, *args)
        return result

    def _call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._portal is None:
                self._portal_cm = start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
            portal = self._portal
        return portal.call(functools.partial(method, *args, **kwargs))

    def _forget_portal(self) -> None:
        self._lock = threading.Lock()
        # The parent's portal stays referenced: collecting it here would close its context
        # manager, which waits for a loop thread this process does not have.
        self._inherited.append((self._portal_cm, self._portal))
        self._portal_cm = self._portal = None

    def close(self) -> None:
        """Stop the loop thread (the wrapped store stays open)."""
        with self._lock:
            portal_cm, self._portal_cm, self._portal = self._portal_cm, None, None
        if portal_cm is not None:
            portal_cm.__exit__(None, None, None)

    def __enter__(self) -> SyncStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_job(self, job: Job) -> Job:
        """See :meth:`JobStore.create_job`."""
        created: Job = self._call(self.store.create_job, job)
        return created

    def get_job(self, job_id: str) -> Job | None:
        """See :meth:`JobStore.get_job`."""
        job: Job | None = self._call(self.store.get_job, job_id)
        return job

    def attach_prediction(self, job_id: str, prediction: dict[str, Any]) -> Job | None:
        """See :meth:`JobStore.attach_prediction`."""
        job: Job | None = self._call(self.store.attach_prediction, job_id, prediction)
        return job

    def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        """See :meth:`JobStore.record_delivery`."""
        recorded: RecordedEvent = self._call(self.store.record_delivery, delivery)
        return recorded

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
        """See :meth:`JobStore.transition`."""
        job: Job | None = self._call(
            self.store.transition, job_id, expected=expected, new=new, error=error,
            prediction=prediction, attempt=attempt,
        )  # fmt: skip
        return job

    def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        """See :meth:`JobStore.claim_job`."""
        job: Job | None = self._call(self.store.claim_job, job_id, stale_after=stale_after)
        return job

    def list_jobs(
        self,
        *,
        statuses: Collection[JobStatus] | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """See :meth:`JobStore.list_jobs`."""
        jobs: list[Job] = self._call(
            self.store.list_jobs, statuses=statuses, updated_before=updated_before, limit=limit
        )
        return jobs

    def save_audio(
        self, *, job: Job, source: Path, info: AudioInfo, name: str | None = None
    ) -> bool:
        """See :meth:`AudioStore.save_audio`."""
        named = {} if name is None else {"name": name}
        saved: bool = self._call(self.store.save_audio, job=job, source=source, info=info, **named)
        return saved

    def get_audio(
        self, content_type: str, content_id: str, name: str | None = None
    ) -> StoredAudio | None:
        """See :meth:`AudioStore.get_audio`."""
        named = () if name is None else (name,)
        audio: StoredAudio | None = self._call(
            self.store.get_audio, content_type, content_id, *named
        )
        return audio

    def log_result(self, entry: LogEntry) -> None:
        """See :meth:`ResultLog.log_result`."""
        self._call(self.store.log_result, entry)

    def list_logs(self, job_id: str | None = None) -> list[LogEntry]:
        """See :meth:`ResultLog.list_logs`."""
        entries: list[LogEntry] = self._call(self.store.list_logs, job_id)
        return entries
