"""The dispatch plug point: how a recorded job reaches whoever processes it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

__all__ = ["Dispatcher", "JobRunner"]

#: Processes one job by id; what a dispatcher calls (in process) or a worker runs.
JobRunner = Callable[[str], Awaitable[object]]


@runtime_checkable
class Dispatcher(Protocol):
    """Hands job ids to processing without waiting for it.

    ``running(runner)`` is entered once, for as long as the app runs; ``submit`` must return
    quickly, because it is called while Replicate waits for the webhook's answer.
    """

    def running(self, runner: JobRunner) -> AbstractAsyncContextManager[None]:
        """Start whatever processes submitted jobs; on exit, drain or leave them recoverable."""
        ...

    async def submit(self, job_id: str) -> None:
        """Queue *job_id* for processing."""
        ...
