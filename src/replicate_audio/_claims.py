"""A worker's claim on a job: every move it makes fenced by its attempt, and the renewal
that keeps the claim while it works (and stops the work once another worker took over)."""

from __future__ import annotations

import inspect
import logging

import anyio

from .jobs import Job, JobStatus
from .storage import Store

logger = logging.getLogger("replicate_audio")


async def move(store: Store, claimed: Job, new: JobStatus, error: str | None = None) -> Job | None:
    """Move a job this worker claimed out of ``processing``, fenced by its attempt: once
    another worker has taken the job over, this one can no longer move it."""
    attempt = claimed.attempts if _fences(store) else None
    expected = [JobStatus.PROCESSING]
    if attempt is None:
        return await store.transition(claimed.id, expected=expected, new=new, error=error)
    return await store.transition(
        claimed.id, expected=expected, new=new, error=error, attempt=attempt
    )


_FENCING: dict[type, bool] = {}


def _fences(store: Store) -> bool:
    """Whether *store*'s ``transition`` takes ``attempt=``; a store written before it did
    still works, unfenced, with a warning."""
    kind = type(store)
    if kind not in _FENCING:
        parameters = inspect.signature(store.transition).parameters.values()
        _FENCING[kind] = any(
            p.name == "attempt" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
        )
        if not _FENCING[kind]:
            logger.warning(
                "%s.transition() takes no attempt=: a worker whose claim was taken over can "
                "still complete its job; add it (see the storage docs)",
                kind.__name__,
            )
    return _FENCING[kind]


class ClaimLost(Exception):
    """Another worker took the job over while this one was on it."""


async def keep_claim(store: Store, claimed: Job, lease: float, work: anyio.CancelScope) -> None:
    """Renew the claim every third of the lease, so no sweep hands a slow job to another
    worker while this one is still on it. Cancels *work* when the job was taken over anyway
    (this worker stalled past its lease)."""
    while True:
        await anyio.sleep(lease / 3)
        try:
            renewed = await move(store, claimed, JobStatus.PROCESSING)
        except Exception as error:  # the fenced final move still guards; keep working
            logger.warning("could not renew the claim on job %s: %s", claimed.id, error)
            continue
        if renewed is None:
            work.cancel()
            return
