"""The SQLAlchemy Core tables behind SQLAlchemyStore (imported only when SQLAlchemy is), and
the in-place migration of tables made by an older version."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

__all__ = ["define_tables", "migrate"]


def define_tables(metadata: sa.MetaData, prefix: str) -> dict[str, sa.Table]:
    """Add the jobs, deliveries, audio and logs tables, named with *prefix*, to *metadata*."""

    def created_at() -> sa.Column[datetime]:
        return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)

    key = sa.String(255)
    jobs = sa.Table(
        f"{prefix}jobs", metadata,
        sa.Column("id", key, primary_key=True),
        sa.Column("content_type", key, nullable=False),
        sa.Column("content_id", key, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("config", sa.JSON(none_as_null=True)),
        sa.Column("prediction", sa.JSON(none_as_null=True)),
        created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prediction_id", key),
    )  # fmt: skip
    sa.Index(f"{prefix}jobs_status_updated_at", jobs.c.status, jobs.c.updated_at)
    sa.Index(f"{prefix}jobs_prediction_id", jobs.c.prediction_id, unique=True)
    deliveries = sa.Table(
        f"{prefix}deliveries", metadata,
        sa.Column("webhook_id", key, primary_key=True),
        sa.Column("job_id", key, nullable=False),
        created_at(),
    )  # fmt: skip
    audio = sa.Table(
        f"{prefix}audio", metadata,
        sa.Column("content_type", key, primary_key=True),
        sa.Column("content_id", key, primary_key=True),
        sa.Column("job_id", key, nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        created_at(),
        sa.Column("job_created_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    # Named files (stems), one job's per content; the content's one audio stays in `audio`.
    audio_files = sa.Table(
        f"{prefix}audio_files", metadata,
        sa.Column("content_type", key, primary_key=True),
        sa.Column("content_id", key, primary_key=True),
        sa.Column("name", key, primary_key=True),
        sa.Column("job_id", key, nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        created_at(),
        sa.Column("job_created_at", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip
    logs = sa.Table(
        f"{prefix}logs", metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", key, nullable=False),
        sa.Column("content_type", key, nullable=False),
        sa.Column("content_id", key, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("duration", sa.Float),
        sa.Column("size", sa.BigInteger),
        created_at(),
        sa.UniqueConstraint("job_id", "status"),
    )  # fmt: skip
    return {
        "jobs": jobs, "deliveries": deliveries, "audio": audio, "audio_files": audio_files,
        "logs": logs,
    }  # fmt: skip


def migrate(connection: sa.Connection, tables: dict[str, sa.Table]) -> None:
    """Bring tables made by an older version up to *tables*, in place, in this transaction.

    Version 1 had no ``jobs.prediction_id`` (a job's id was its prediction's) and no
    ``audio.job_created_at``; both are added and filled from what the rows already say.
    The indexes are created afterwards by ``create_all``.
    """
    inspector = sa.inspect(connection)
    jobs, audio = tables["jobs"], tables["audio"]
    preparer = connection.dialect.identifier_preparer
    if not inspector.has_table(jobs.name):
        return  # a new database: create_all makes everything
    if "prediction_id" not in {column["name"] for column in inspector.get_columns(jobs.name)}:
        column_type = jobs.c.prediction_id.type.compile(dialect=connection.dialect)
        connection.execute(
            sa.text(
                f"ALTER TABLE {preparer.quote(jobs.name)} ADD COLUMN prediction_id {column_type}"
            )
        )
        connection.execute(jobs.update().values(prediction_id=jobs.c.id))
    if inspector.has_table(audio.name) and "job_created_at" not in {
        column["name"] for column in inspector.get_columns(audio.name)
    }:
        column_type = audio.c.job_created_at.type.compile(dialect=connection.dialect)
        connection.execute(
            sa.text(
                f"ALTER TABLE {preparer.quote(audio.name)} ADD COLUMN job_created_at {column_type}"
            )
        )
        created = sa.select(jobs.c.created_at).where(jobs.c.id == audio.c.job_id).scalar_subquery()
        connection.execute(audio.update().values(job_created_at=created))
