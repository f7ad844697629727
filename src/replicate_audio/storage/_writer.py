"""One writer thread per SQLite store: every write of the process, many per transaction.

Writers queue their steps; the thread takes whatever is queued, runs each step in a
savepoint of one ``BEGIN IMMEDIATE`` transaction, commits once, and only then answers each
waiting caller (group commit). The event loop never waits on SQLite: it awaits a future,
and the writer wakes each loop once per batch, whatever the number of its steps in it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import attrs

from ..errors import StorageError

__all__ = ["Writer", "wait_for"]

T = TypeVar("T")

#: The most steps committed in one transaction.
MAX_BATCH = 256


@attrs.define
class _Step:
    """One queued step and who waits for it: a thread on *future*, or a task of *loop* on
    *waiter* (an asyncio future, settled on its loop's thread)."""

    run: Callable[[], Any]
    deadline: float | None
    future: concurrent.futures.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[Any] | None = None

    def start(self) -> bool:
        """Whether the step should run: its caller has not given up (cancelled) first."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        # Read from the writer thread: a cancel that lands just after only drops the answer.
        return self.waiter is not None and not self.waiter.cancelled()


def _settle(settled: list[tuple[_Step, Any, BaseException | None]]) -> None:
    """Answer every step of a batch: futures at once, and each loop with one wake-up."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Step, Any, BaseException | None]]] = {}
    for outcome in settled:
        step, result, failure = outcome
        if step.future is not None:
            if step.future.done():  # given up on (cancelled) before it ran
                continue
            if failure is not None:
                step.future.set_exception(failure)
            else:
                step.future.set_result(result)
        elif step.loop is not None:
            by_loop.setdefault(step.loop, []).append(outcome)
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_answer_waiters, outcomes)


def _answer_waiters(outcomes: list[tuple[_Step, Any, BaseException | None]]) -> None:
    """On the waiters' loop: set each result that is still awaited."""
    for step, result, failure in outcomes:
        waiter = step.waiter
        if waiter is None or waiter.done():
            continue
        if failure is not None:
            waiter.set_exception(failure)
        else:
            waiter.set_result(result)


async def wait_for(future: concurrent.futures.Future[T]) -> T:
    """Await a future that another thread completes, without a thread of our own on asyncio."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio): wait on a worker thread
        return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
    return await asyncio.wrap_future(future)


class Writer:
    """Runs steps on one thread inside shared transactions.

    Args:
        connect: opens the thread's connection (called on the writer thread).
        name: for the thread's name and error messages.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._connect = connect
        self._name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Step | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    def submit(
        self, run: Callable[[], T], *, timeout: float | None = None
    ) -> concurrent.futures.Future[T]:
        """Queue *run*; its future holds its result once its transaction has committed.

        A step still queued after *timeout* seconds is not run: it fails with StorageError.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._enqueue(_Step(run, _deadline(timeout), future=future))
        return future

    async def run(self, run: Callable[[], T], *, within: float | None = None) -> T:
        """Queue *run* and await its committed result."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): through a thread-safe future
            return await wait_for(self.submit(run, timeout=within))
        waiter: asyncio.Future[T] = loop.create_future()
        self._enqueue(_Step(run, _deadline(within), loop=loop, waiter=waiter))
        return await waiter

    def _enqueue(self, step: _Step) -> None:
        with self._lock:
            if self._closed:
                raise StorageError(f"SQLite store {self._name} is closed")
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._queue, self._thread, self._pid = queue.SimpleQueue(), None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name=f"replicate-audio-writer {self._name}", daemon=True
                )
                self._thread.start()
            self._queue.put(step)

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
            self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _serve(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                step = self._queue.get()
                if step is None:
                    return
                batch = [step]
                while len(batch) < MAX_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)  # stop after this batch
                        break
                    batch.append(more)
                if connection is None:
                    try:
                        connection = self._connect()
                    except Exception as error:
                        _fail(batch, error, self._name)
                        continue
                self._commit(connection, batch)
        finally:
            if connection is not None:
                connection.close()

    def _commit(self, connection: sqlite3.Connection, batch: list[_Step]) -> None:
        now = time.monotonic()
        live = []
        late: list[tuple[_Step, Any, BaseException | None]] = []
        for step in batch:
            if step.deadline is not None and now > step.deadline:
                error = StorageError(
                    f"SQLite store {self._name}: no commit within the time allowed"
                )
                late.append((step, None, error))
            elif step.start():
                live.append(step)
        _settle(late)
        if not live:
            return
        outcomes: list[tuple[_Step, Any, BaseException | None]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for step in live:
                connection.execute("SAVEPOINT step")
                try:
                    result = step.run()
                except Exception as error:  # this step's own failure: undo it alone
                    connection.execute("ROLLBACK TO step")
                    if isinstance(error, sqlite3.Error | OSError):
                        error = StorageError(f"SQLite store {self._name}: {error}")
                    outcomes.append((step, None, error))
                else:
                    outcomes.append((step, result, None))
                connection.execute("RELEASE step")
            connection.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:
            if connection.in_transaction:
                connection.rollback()
            _fail(live, error, self._name)
            return
        _settle(outcomes)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _fail(steps: list[_Step], error: BaseException, name: str) -> None:
    """Fail every step of *steps* with *error* (as a StorageError)."""
    wrapped = (
        error if isinstance(error, StorageError) else StorageError(f"SQLite store {name}: {error}")
    )
    _settle([(step, None, wrapped) for step in steps])
