"""Where jobs, audio and the result log are kept: the protocols and the built-in stores."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread

from .memory import MemoryStore
from .protocols import (
    AudioInfo,
    AudioStore,
    JobStore,
    LogEntry,
    RecordedEvent,
    ResultLog,
    Store,
    StoredAudio,
)
from .sqlite import SQLiteStore

if TYPE_CHECKING:
    from .sqlalchemy import SQLAlchemyStore

__all__ = [
    "AudioInfo",
    "AudioStore",
    "JobStore",
    "LogEntry",
    "RecordedEvent",
    "ResultLog",
    "Store",
    "StoredAudio",
    "MemoryStore",
    "SQLAlchemyStore",
    "SQLiteStore",
    "call",
    "call_blocking",
    "open_store",
    "shared_store",
]

T = TypeVar("T")


def call_blocking(method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a store method from synchronous code (no running event loop), whether it is
    ``async def`` or blocking.

    Example:
        >>> call_blocking(max, 2, 3)
        3
    """
    if inspect.iscoroutinefunction(method):
        return anyio.run(functools.partial(method, *args, **kwargs))
    return method(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # SQLAlchemy is an optional dependency: import its store on first use.
    if name == "SQLAlchemyStore":
        from .sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(database: str) -> Store:
    """The store for ``REPLICATE_AUDIO_DATABASE``: a SQLAlchemy URL, or a SQLite file path.

    Example:
        >>> open_store("sqlite-file.sqlite3")  # doctest: +SKIP
        >>> open_store("postgresql+psycopg://app@db/app")  # doctest: +SKIP
    """
    if "://" in database:
        from .sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore(database)
    return SQLiteStore(database)


async def call(method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a store method whether it is ``async def`` or blocking.

    A blocking method runs on a worker thread so that it never stalls the event loop.

    Example:
        >>> import anyio
        >>> anyio.run(call, max, 2, 3)
        3
    """
    if inspect.iscoroutinefunction(method):
        return await method(*args, **kwargs)
    result = await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))
    if inspect.isawaitable(result):
        return await result
    return result


_shared: dict[str, Store] = {}
_shared_lock = threading.Lock()


def shared_store(database: str) -> Store:
    """One store per ``REPLICATE_AUDIO_DATABASE`` value in this process, opened on first use.

    What :func:`~replicate_audio.create_webhook_prediction` records jobs in when it is not
    given a store.

    Example:
        >>> shared_store("jobs.sqlite3") is shared_store("jobs.sqlite3")  # doctest: +SKIP
        True
    """
    with _shared_lock:
        if database not in _shared:
            _shared[database] = open_store(database)
        return _shared[database]
