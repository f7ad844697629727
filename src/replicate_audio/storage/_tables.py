"""The SQLAlchemy Core tables behind SQLAlchemyStore (imported only when SQLAlchemy is)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

__all__ = ["define_tables"]


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
    )  # fmt: skip
    sa.Index(f"{prefix}jobs_status_updated_at", jobs.c.status, jobs.c.updated_at)
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
    return {"jobs": jobs, "deliveries": deliveries, "audio": audio, "logs": logs}
