"""Fixtures for the storage tests: every built-in store, each with a clean state per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from replicate_audio.storage.memory import MemoryStore
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore
from replicate_audio.storage.sqlite import SQLiteStore

AnyStore = MemoryStore | SQLiteStore | SQLAlchemyStore

ALL_KINDS = [
    "memory",
    "sqlite",
    "sqlalchemy-sqlite",
    pytest.param("sqlalchemy-postgres", marks=pytest.mark.postgres),
]


def unique_prefix() -> str:
    """A table prefix no other test uses, so PostgreSQL tests never see each other's rows."""
    return f"ra_test_{uuid.uuid4().hex[:10]}_"


def drop_tables(store: SQLAlchemyStore) -> None:
    """Remove the tables a test's SQLAlchemyStore created, and its connections."""
    store.metadata.drop_all(store.engine)
    store.close()


@pytest.fixture
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], AnyStore]]:
    """Open a fresh store of a kind; everything opened is closed (and dropped) afterwards."""
    cleanups: list[Callable[[], None]] = []

    def open_kind(kind: str) -> AnyStore:
        if kind == "memory":
            return MemoryStore()
        if kind == "sqlite":
            sqlite_store = SQLiteStore(tmp_path / f"{uuid.uuid4().hex}.db")
            cleanups.append(sqlite_store.close)
            return sqlite_store
        if kind == "sqlalchemy-sqlite":
            url = f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
        else:
            url = request.getfixturevalue("postgres_url")
        sqlalchemy_store = SQLAlchemyStore(url, table_prefix=unique_prefix())
        cleanups.append(lambda: drop_tables(sqlalchemy_store))
        return sqlalchemy_store

    yield open_kind
    for cleanup in reversed(cleanups):
        cleanup()


@pytest.fixture(params=ALL_KINDS)
def store(request: pytest.FixtureRequest, open_store: Callable[[str], AnyStore]) -> AnyStore:
    """Each built-in store in turn, empty."""
    return open_store(request.param)
