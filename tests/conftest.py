"""Shared test fixtures: real services on this machine, skipped (or failed in CI) when absent."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from replicate_audio.testing import ReplicateSimulator
from services import require_service
from webhook_receiver import WebhookReceiver


@pytest.fixture
def postgres_url() -> str:
    """A SQLAlchemy URL for the local PostgreSQL test database."""
    require_service("postgres")
    return os.environ.get(
        "REPLICATE_AUDIO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture
def simulator() -> Iterator[ReplicateSimulator]:
    """A fast simulator: 50 ms predictions, quick webhook retries."""
    with ReplicateSimulator(run_time=0.05, webhook_retry_delays=(0.05, 0.1, 0.2, 0.4, 0.8)) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver; call ``receiver.serve(audio)`` once the app is built."""
    running = WebhookReceiver()
    yield running
    running.close()
