"""The pytest plugin installed with replicate-audio: a running ``ReplicateSimulator`` per test.

Imports nothing heavy at collection time; the simulator is imported when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .simulator import ReplicateSimulator

__all__ = ["replicate_simulator", "webhook_secret"]


@pytest.fixture
def webhook_secret() -> str:
    """A fresh ``whsec_...`` secret; the ``replicate_simulator`` fixture signs with it.

    Example:
        >>> def test_secret(webhook_secret):  # doctest: +SKIP
        ...     assert webhook_secret.startswith("whsec_")
    """
    from .signing import generate_secret

    return generate_secret()


@pytest.fixture
def replicate_simulator(webhook_secret: str) -> Iterator[ReplicateSimulator]:
    """A running :class:`ReplicateSimulator` on 127.0.0.1, stopped after the test.

    Predictions take 0.2 s and failed terminal webhooks are retried quickly, so tests stay
    fast; change ``add_model(...)`` or ``faults`` inside the test as needed.

    Example:
        >>> def test_create(replicate_simulator):  # doctest: +SKIP
        ...     client = replicate_simulator.client()
        ...     prediction = client.predictions.create(
        ...         model="stability-ai/stable-audio-2.5", input={"prompt": "rain"})
        ...     assert prediction.status == "starting"
    """
    from .simulator import ReplicateSimulator

    with ReplicateSimulator(
        secret=webhook_secret,
        run_time=0.2,
        webhook_retry_delays=(0.05, 0.1, 0.2, 0.4),
        seed=0,
    ) as simulator:
        yield simulator
