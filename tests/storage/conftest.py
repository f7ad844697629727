"""Fixtures for the storage tests: every built-in store, each with a clean state per test,
seen through :class:`SyncStore` so that the tests read as plain calls."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from replicate_audio.storage import MemoryStore, SQLiteStore, SyncStore
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from storage.databases import drop_tables, unique_prefix, with_driver

ALL_KINDS = [
    "memory",
    "sqlite",
    "sqlalchemy-sqlite",
    pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
    pytest.param("sqlalchemy-asyncpg", marks=pytest.mark.postgres),
]


def sqlalchemy_target(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> str | AsyncEngine:
    """The URL or engine a SQLAlchemyStore of *kind* opens."""
    if kind == "sqlalchemy-sqlite":
        return f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
    url: str = request.getfixturevalue("postgres_url")
    if kind == "sqlalchemy-postgres":
        return url
    assert kind == "sqlalchemy-asyncpg", kind
    # No pool: the tests reach this engine from more than one event loop (SyncStore's,
    # anyio.run's), and an asyncpg connection belongs to the loop that opened it.
    return create_async_engine(with_driver(url, "asyncpg"), poolclass=NullPool)


@pytest.fixture
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], SyncStore]]:
    """Open a fresh store of a kind (the store itself is ``.store``); everything opened is
    closed (and dropped) afterwards."""
    cleanups: list[Callable[[], None]] = []

    def open_kind(kind: str) -> SyncStore:
        if kind == "memory":
            opened: MemoryStore | SQLiteStore | SQLAlchemyStore = MemoryStore()
        elif kind == "sqlite":
            opened = sqlite_store = SQLiteStore(tmp_path / f"{uuid.uuid4().hex}.db")
            cleanups.append(sqlite_store.close)
        else:
            opened = sqlalchemy_store = SQLAlchemyStore(
                sqlalchemy_target(kind, request, tmp_path), table_prefix=unique_prefix()
            )
            cleanups.append(lambda: anyio.run(drop_tables, sqlalchemy_store))
        sync = SyncStore(opened)
        cleanups.append(sync.close)
        return sync

    yield open_kind
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture(params=ALL_KINDS)
def store(request: pytest.FixtureRequest, open_store: Callable[[str], SyncStore]) -> SyncStore:
    """Each built-in store in turn, empty."""
    return open_store(request.param)
