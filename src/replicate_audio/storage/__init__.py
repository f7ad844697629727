"""Where jobs, audio and the result log are kept: the protocols and the built-in stores."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .adapters import SyncStore, ThreadedStore, as_store, from_blocking
from .memory import MemoryStore
from .protocols import (
    AudioInfo,
    AudioStore,
    BlockingStore,
    Delivery,
    DeliveryOutcome,
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
    "BlockingStore",
    "Delivery",
    "DeliveryOutcome",
    "JobStore",
    "LogEntry",
    "MemoryStore",
    "RecordedEvent",
    "ResultLog",
    "SQLAlchemyStore",
    "SQLiteStore",
    "Store",
    "StoredAudio",
    "SyncStore",
    "ThreadedStore",
    "as_store",
    "from_blocking",
    "open_store",
]


def __getattr__(name: str) -> type[SQLAlchemyStore]:
    # SQLAlchemy is an optional dependency: import its store on first use.
    if name == "SQLAlchemyStore":
        from .sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(database: str) -> Store:
    """The store for a ``REPLICATE_AUDIO_DATABASE`` value: a SQLAlchemy URL (sync or async
    driver), or a SQLite file path (default ``replicate-audio.sqlite3`` in the working
    directory). The caller owns it: close it when done.

    Example:
        >>> open_store("sqlite-file.sqlite3")  # doctest: +SKIP
        >>> open_store("postgresql+asyncpg://app@db/app")  # doctest: +SKIP
    """
    if "://" in database:
        from .sqlalchemy import SQLAlchemyStore

        return SQLAlchemyStore(database)
    return SQLiteStore(database)
