"""What only SQLAlchemyStore promises: engines, table names, drivers, and failing politely."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from replicate_audio.errors import StorageError
from replicate_audio.jobs import Job
from replicate_audio.storage.sqlalchemy import SQLAlchemyStore


def test_uses_a_given_engine_and_prefixes_tables(tmp_path: Path) -> None:
    """A passed engine is used as is (not disposed on close); tables carry the prefix."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with SQLAlchemyStore(engine, table_prefix="audio_") as store:
        store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
    assert sorted(sa.inspect(engine).get_table_names()) == [
        "audio_audio",
        "audio_deliveries",
        "audio_jobs",
        "audio_logs",
    ]
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT id FROM audio_jobs")).scalar() == "p1"
    engine.dispose()


def test_data_survives_reopening(tmp_path: Path) -> None:
    """A second store on the same database sees the first one's jobs and deliveries."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with SQLAlchemyStore(url) as store:
        store.create_job(Job(id="p1", content_type="sound_effect", content_id="7"))
        store.record_event("w1", "p1", {"status": "succeeded"})
    with SQLAlchemyStore(url) as store:
        assert store.record_event("w1", "p1", {"status": "succeeded"}).duplicate


def test_unreachable_database_is_a_storage_error() -> None:
    """A database that refuses connections raises StorageError (callers answer 5xx)."""
    with pytest.raises(StorageError):
        SQLAlchemyStore("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2")


@pytest.mark.postgres
def test_bare_postgresql_url_uses_psycopg(postgres_url: str) -> None:
    """'postgresql://' gets the psycopg 3 driver rather than the absent psycopg2."""
    bare = sa.engine.make_url(postgres_url).set(drivername="postgresql")
    store = SQLAlchemyStore(bare.render_as_string(hide_password=False), table_prefix="ra_bare_")
    try:
        assert store.engine.url.drivername == "postgresql+psycopg"
    finally:
        store.metadata.drop_all(store.engine)
        store.close()
