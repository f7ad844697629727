"""The default dispatcher: a bounded pool of anyio tasks inside the web process."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import ConfigurationError
from .protocols import JobRunner

__all__ = ["InProcessDispatcher"]

logger = logging.getLogger("replicate_audio")


class InProcessDispatcher:
    """Processes jobs on at most *concurrency* tasks of the app's own event loop.

    Nothing is lost if the process dies: every submitted job is already recorded in the
    job store, and the app picks up unfinished jobs when it starts again.

    Args:
        concurrency: how many jobs are processed at once.
        drain_timeout: on shutdown, how long queued jobs may still run before they are
            left, recoverable, in the store.

    Example:
        >>> audio = ReplicateAudio(dispatcher=InProcessDispatcher(concurrency=8))  # doctest: +SKIP
    """

    def __init__(self, *, concurrency: int = 4, drain_timeout: float = 10.0) -> None:
        if concurrency < 1:
            raise ConfigurationError("concurrency", f"must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.drain_timeout = drain_timeout
        self._send: MemoryObjectSendStream[str] | None = None
        self._queued: set[str] = set()

    @asynccontextmanager
    async def running(self, runner: JobRunner) -> AsyncIterator[None]:
        """Run the worker tasks until the block exits, then drain within ``drain_timeout``."""
        # Ids still queued when an earlier run stopped are back in the store as received,
        # and the start-up requeue submits them again: forget them here.
        self._queued.clear()
        send, receive = anyio.create_memory_object_stream[str](math.inf)
        async with anyio.create_task_group() as group:
            for _ in range(self.concurrency):
                group.start_soon(self._work, receive.clone(), runner)
            receive.close()
            self._send = send
            try:
                yield
            finally:
                self._send = None
                send.close()  # workers finish what is queued, then stop
                group.cancel_scope.deadline = anyio.current_time() + self.drain_timeout

    async def submit(self, job_id: str) -> None:
        """Queue *job_id*; a job already waiting in the queue is not queued twice."""
        if self._send is None:
            raise RuntimeError("the dispatcher is not running; start the ReplicateAudio app")
        if job_id not in self._queued:
            self._queued.add(job_id)
            self._send.send_nowait(job_id)

    async def _work(self, receive: MemoryObjectReceiveStream[str], runner: JobRunner) -> None:
        async with receive:
            async for job_id in receive:
                self._queued.discard(job_id)
                try:
                    await runner(job_id)
                except Exception:  # one job's failure must not stop the pool
                    logger.exception("processing job %s failed; it stays recoverable", job_id)
