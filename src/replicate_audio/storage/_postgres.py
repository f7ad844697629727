"""PostgreSQL's one-statement intake: a delivery found, deduplicated and applied in a single
round trip (data-modifying CTEs, https://www.postgresql.org/docs/current/queries-with.html).

Every sub-statement sees one snapshot and none sees another's writes, so each step reads
what the one before it *returned*: ``ours`` (the job, locked), ``fresh`` (the delivery row,
if new), ``moved`` (the job row as updated). The answer has one row per outcome, none when
the delivery is not ours.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..jobs import utcnow
from ._records import event_sources, event_status, job_from_columns
from .protocols import Delivery, DeliveryOutcome, RecordedEvent

__all__ = ["record_delivery"]

_STATEMENT = """
WITH ours AS (
    SELECT j.* FROM {jobs} j
    WHERE (CASE WHEN :by_job THEN j.id = :key ELSE j.prediction_id = :key END)
      AND (CAST(:content_type AS text) IS NULL OR j.content_type = :content_type)
      AND (CAST(:content_id AS text) IS NULL OR j.content_id = :content_id)
      AND (j.prediction_id = :prediction_id OR (j.prediction_id IS NULL AND NOT EXISTS (
          SELECT 1 FROM {jobs} o WHERE o.prediction_id = :prediction_id AND o.id <> j.id)))
    FOR UPDATE
), fresh AS (
    INSERT INTO {deliveries} (webhook_id, job_id, created_at)
    SELECT :webhook_id, ours.id, :now FROM ours
    ON CONFLICT DO NOTHING
    RETURNING job_id
), moved AS (
    UPDATE {jobs} j SET
        prediction_id = COALESCE(j.prediction_id, :prediction_id),
        status = CASE WHEN j.status = ANY(:sources) THEN :new_status ELSE j.status END,
        prediction = CASE WHEN j.status = ANY(:sources) THEN CAST(:prediction AS json)
                          ELSE j.prediction END,
        updated_at = :now
    FROM fresh
    WHERE j.id = fresh.job_id AND (j.status = ANY(:sources) OR j.prediction_id IS NULL)
    RETURNING j.*
)
SELECT 'moved' AS outcome, ours.status AS old_status, moved.* FROM moved, ours
UNION ALL
SELECT CASE WHEN EXISTS (SELECT 1 FROM fresh) THEN 'recorded' ELSE 'duplicate' END,
       ours.status, ours.*
FROM ours WHERE NOT EXISTS (SELECT 1 FROM moved)
"""


def statement(jobs: sa.Table, deliveries: sa.Table, dialect: sa.Dialect) -> sa.TextClause:
    """The intake statement for these tables, its parameters typed."""
    quote = dialect.identifier_preparer.quote
    text = _STATEMENT.format(jobs=quote(jobs.name), deliveries=quote(deliveries.name))
    return sa.text(text).bindparams(
        sa.bindparam("by_job", type_=sa.Boolean),
        sa.bindparam("key", type_=sa.String),
        sa.bindparam("content_type", type_=sa.String),
        sa.bindparam("content_id", type_=sa.String),
        sa.bindparam("prediction_id", type_=sa.String),
        sa.bindparam("webhook_id", type_=sa.String),
        sa.bindparam("now", type_=sa.DateTime(timezone=True)),
        sa.bindparam("sources", type_=postgresql.ARRAY(sa.String)),
        sa.bindparam("new_status", type_=sa.String),
        sa.bindparam("prediction", type_=sa.JSON),
    )


def record_delivery(
    connection: sa.Connection, compiled: sa.TextClause, delivery: Delivery
) -> RecordedEvent:
    """Run the intake statement for *delivery* on *connection* (autocommit is enough: it is
    one statement)."""
    new = event_status(delivery.prediction)
    parameters: dict[str, Any] = {
        "by_job": delivery.job_id is not None,
        "key": delivery.job_id if delivery.job_id is not None else delivery.prediction_id,
        "content_type": delivery.content_type,
        "content_id": delivery.content_id,
        "prediction_id": delivery.prediction_id,
        "webhook_id": delivery.webhook_id,
        "now": utcnow(),
        "sources": [status.value for status in event_sources(new)],
        "new_status": new.value if new is not None else None,
        "prediction": delivery.prediction,
    }
    row = connection.execute(compiled, parameters).first()
    if row is None:
        return RecordedEvent(DeliveryOutcome.NOT_OURS, None)
    columns = row._asdict()
    job = job_from_columns(columns)
    if columns["outcome"] == "duplicate":
        return RecordedEvent(DeliveryOutcome.DUPLICATE, job)
    changed = columns["outcome"] == "moved" and job.status.value != columns["old_status"]
    return RecordedEvent(DeliveryOutcome.RECORDED, job, changed=changed)
