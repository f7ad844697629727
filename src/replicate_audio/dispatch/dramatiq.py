"""The Dramatiq dispatcher: the web process queues job ids on Redis or RabbitMQ, and
``replicate-audio worker`` processes (any number, anywhere) run them."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from anyio.from_thread import start_blocking_portal

try:
    import dramatiq
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "replicate_audio.dispatch.dramatiq needs Dramatiq: install replicate-audio[dramatiq]"
    ) from error

from ..errors import ConfigurationError, JobNotFoundError
from .protocols import JobRunner

if TYPE_CHECKING:
    from ..app import ReplicateAudio

__all__ = ["BROKER_URL_VARIABLE", "DramatiqDispatcher", "DramatiqWorker", "run_worker"]

logger = logging.getLogger("replicate_audio")

#: The environment variable a :class:`DramatiqDispatcher` reads its broker URL from.
BROKER_URL_VARIABLE = "REPLICATE_AUDIO_BROKER_URL"
ACTOR_NAME = "replicate_audio_process_job"
# Retries are for our own store being down (StorageError); a minute or so is plenty.
_DEFAULT_OPTIONS: dict[str, Any] = {
    "max_retries": 20,
    "min_backoff": 1_000,
    "max_backoff": 60_000,
    "throws": (JobNotFoundError,),  # no such job in this worker's store: retrying won't help
}


def broker_from_url(url: str) -> dramatiq.Broker:
    """A Redis broker for ``redis://`` and ``rediss://`` URLs, RabbitMQ for ``amqp(s)://``.

    Raises:
        ConfigurationError: any other URL; the message names ``REPLICATE_AUDIO_BROKER_URL``.

    Example:
        >>> broker_from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
    """
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url)  # type: ignore[no-untyped-call]
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url)
    shown = f"a {scheme}:// URL" if "://" in url else repr(url)
    raise ConfigurationError(BROKER_URL_VARIABLE, f"must be a redis:// or amqp:// URL, not {shown}")


class DramatiqDispatcher:
    """Sends each job id to a Dramatiq queue; :class:`DramatiqWorker` processes run them.

    The web process only sends: entering ``running()`` starts nothing. Messages are
    delivered at least once and the store's compare-and-set claim keeps every job to one
    worker, so each piece of audio is still stored exactly once.

    Args:
        broker: a Dramatiq broker of your own; one dispatcher per broker.
        queue_name: the queue job ids travel on.
        url: the broker URL when *broker* is not given; defaults to
            ``REPLICATE_AUDIO_BROKER_URL``.
        options: Dramatiq actor options over ours (``max_retries``, ``min_backoff``, ...).

    Raises:
        ConfigurationError: no broker, or a URL that is neither Redis nor RabbitMQ.

    Example:
        >>> dispatcher = DramatiqDispatcher(url="redis://127.0.0.1:6379/0")  # doctest: +SKIP
        >>> audio = ReplicateAudio(dispatcher=dispatcher)  # doctest: +SKIP
    """

    def __init__(
        self,
        broker: dramatiq.Broker | None = None,
        *,
        queue_name: str = "replicate_audio",
        url: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if broker is None:
            url = url or os.environ.get(BROKER_URL_VARIABLE)
            if not url:
                raise ConfigurationError(BROKER_URL_VARIABLE, "is not set; give a broker URL")
            broker = broker_from_url(url)
        self.broker = broker
        self.queue_name = queue_name
        self._perform: Callable[[str], object] | None = None
        try:
            self.actor = dramatiq.Actor(
                self._process_job,
                broker=broker,
                actor_name=ACTOR_NAME,
                queue_name=queue_name,
                priority=0,
                options=_DEFAULT_OPTIONS | dict(options or {}),
            )
        except ValueError:
            raise ConfigurationError(
                "broker", "already carries a DramatiqDispatcher; use one per broker"
            ) from None

    @asynccontextmanager
    async def running(self, runner: JobRunner) -> AsyncIterator[None]:
        """Nothing to start: workers process the jobs, not this process."""
        yield

    async def submit(self, job_id: str) -> None:
        """Send *job_id* to the queue (the blocking send runs on a worker thread)."""
        try:
            await anyio.to_thread.run_sync(self.actor.send, job_id)
        except Exception:  # the job is recorded durably; the sweep sends it again
            logger.exception("could not queue job %s; the sweep will queue it again", job_id)

    def close(self) -> None:
        """Close the broker's connections."""
        self.broker.close()

    def _process_job(self, job_id: str) -> None:
        # The actor: runs on a Dramatiq worker thread. Raising (StorageError) means retry.
        if self._perform is None:
            raise RuntimeError("no DramatiqWorker is running for this dispatcher")
        self._perform(job_id)


class DramatiqWorker:
    """Consumes a :class:`DramatiqDispatcher`'s queue in this process and runs each job
    with ``audio.process`` on one event loop owned by the worker.

    The facade is entered on that loop, so its downloader and its background sweep
    (re-queueing abandoned jobs, reconciling lost webhooks) run there too.

    Args:
        audio: a facade whose ``dispatcher`` is a :class:`DramatiqDispatcher`.
        threads: how many jobs run at once.
        worker_timeout: seconds an idle consumer waits before looking again.
        shutdown_timeout: seconds running jobs may take to finish on :meth:`stop`; jobs
            still running then are cancelled and taken over after their lease.

    Example:
        >>> with DramatiqWorker(ReplicateAudio(dispatcher=DramatiqDispatcher())):  # doctest: +SKIP
        ...     threading.Event().wait()
    """

    def __init__(
        self,
        audio: ReplicateAudio,
        *,
        threads: int = 4,
        worker_timeout: float = 1.0,
        shutdown_timeout: float = 30.0,
    ) -> None:
        if not isinstance(audio.dispatcher, DramatiqDispatcher):
            kind = type(audio.dispatcher).__name__
            raise ConfigurationError("dispatcher", f"must be a DramatiqDispatcher, not {kind}")
        if threads < 1:
            raise ConfigurationError("threads", f"must be at least 1, not {threads}")
        self.audio = audio
        self.dispatcher: DramatiqDispatcher = audio.dispatcher
        self.threads, self.worker_timeout = threads, worker_timeout
        self.shutdown_timeout = shutdown_timeout
        self._stack: ExitStack | None = None
        self._running: set[Future[Any]] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the event loop, enter the facade on it, and start consuming."""
        if self._stack is not None:
            raise RuntimeError("the worker is already running")
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal())
            stack.enter_context(portal.wrap_async_context_manager(self.audio))

            def perform(job_id: str) -> object:
                future = portal.start_task_soon(self.audio.process, job_id)
                with self._tracking(future):
                    return future.result()

            self.dispatcher._perform = perform
            stack.callback(setattr, self.dispatcher, "_perform", None)
            worker = dramatiq.Worker(
                self.dispatcher.broker,
                queues={self.dispatcher.queue_name},
                worker_timeout=max(1, int(self.worker_timeout * 1000)),
                worker_threads=self.threads,
            )
            worker.start()
            stack.callback(self._cancel_running)  # runs after the stop below
            stack.callback(worker.stop, int(self.shutdown_timeout * 1000))
            self._stack = stack.pop_all()

    def stop(self) -> None:
        """Stop consuming, let running jobs finish (within ``shutdown_timeout``), then
        stop the facade and its loop. Messages not yet started go back to the queue."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def __enter__(self) -> DramatiqWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @contextmanager
    def _tracking(self, future: Future[Any]) -> Iterator[None]:
        with self._lock:
            self._running.add(future)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(future)

    def _cancel_running(self) -> None:
        with self._lock:
            running = list(self._running)
        for future in running:
            future.cancel()  # the job stays claimed; the sweep takes it over after its lease


def run_worker(
    audio: ReplicateAudio,
    *,
    threads: int = 4,
    worker_timeout: float = 1.0,
    shutdown_timeout: float = 30.0,
    stop: threading.Event | None = None,
) -> None:
    """Run a :class:`DramatiqWorker` in the foreground until SIGINT or SIGTERM (when called
    on the main thread) or until *stop* is set, then shut it down cleanly.

    Example:
        >>> run_worker(ReplicateAudio(dispatcher=DramatiqDispatcher()), threads=8)  # doctest: +SKIP
    """
    stop = stop or threading.Event()
    restore: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            restore[number] = signal.signal(number, lambda *_: stop.set())
    try:
        with DramatiqWorker(
            audio,
            threads=threads,
            worker_timeout=worker_timeout,
            shutdown_timeout=shutdown_timeout,
        ):
            while not stop.wait(0.5):  # a timed wait lets the signal handlers run promptly
                pass
    finally:
        for number, handler in restore.items():
            signal.signal(number, handler)
