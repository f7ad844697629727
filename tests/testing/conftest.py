"""Fixtures for the simulator tests: a fast simulator and a tiny recording webhook receiver."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from recording_receiver import Receiver

from replicate_audio.testing import ReplicateSimulator


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that records bodies and headers."""
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def sim() -> Iterator[ReplicateSimulator]:
    """A running simulator with 0.2 s predictions and fast webhook retries."""
    with ReplicateSimulator(run_time=0.2, webhook_retry_delays=(0.05, 0.05, 0.1)) as simulator:
        yield simulator
