"""The databases of the storage tests: PostgreSQL table prefixes and drivers, and cleaning up."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from replicate_audio.storage.sqlalchemy import SQLAlchemyStore


def unique_prefix() -> str:
    """A table prefix no other test uses, so PostgreSQL tests never see each other's rows."""
    return f"ra_test_{uuid.uuid4().hex[:10]}_"


def with_driver(url: str, driver: str) -> str:
    """The PostgreSQL *url* with another driver (``psycopg``, ``asyncpg``, ``psycopg_async``)."""
    changed = sa.engine.make_url(url).set(drivername=f"postgresql+{driver}")
    return changed.render_as_string(hide_password=False)


async def drop_tables(store: SQLAlchemyStore) -> None:
    """Remove the tables a test's SQLAlchemyStore created, and its connections."""
    if store.async_engine is not None:
        # The async engine's sync_engine cannot run I/O outside a greenlet: go through it.
        async with store.async_engine.begin() as connection:
            await connection.run_sync(store.metadata.drop_all)
        await store.async_engine.dispose()
    else:
        assert store.engine is not None
        store.metadata.drop_all(store.engine)
    await store.aclose()
