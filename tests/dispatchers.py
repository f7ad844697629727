"""Dispatchers for tests that run jobs by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from replicate_audio.dispatch import JobRunner


class HeldDispatcher:
    """Takes jobs and never runs them: the process 'dies' between receipt and processing,
    or the test runs each job itself."""

    def __init__(self) -> None:
        self.held: list[str] = []

    @asynccontextmanager
    async def running(self, runner: JobRunner) -> AsyncIterator[None]:
        yield

    async def submit(self, job_id: str) -> None:
        self.held.append(job_id)
