"""The simulator under load: many predictions at once, every delivery accounted for."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from recording_receiver import Receiver

from replicate_audio.testing import ReplicateSimulator

COUNT = 200


def test_200_concurrent_predictions_lose_no_delivery(receiver: Receiver) -> None:
    """200 predictions created at once each deliver start then succeeded, exactly once."""
    started = time.monotonic()
    with ReplicateSimulator(run_time=0.05, webhook_retry_delays=(0.05, 0.1)) as sim:
        client = sim.client()

        def create(n: int) -> str:
            prediction = client.predictions.create(
                model="stability-ai/stable-audio-2.5",
                input={"prompt": f"sound {n}", "duration": 1},
                webhook=f"{receiver.url}/hook/{n}",
                webhook_events_filter=["start", "completed"],
            )
            return prediction.id

        with ThreadPoolExecutor(32) as pool:
            ids = list(pool.map(create, range(COUNT)))
        sim.wait_idle(timeout=30)
        elapsed = time.monotonic() - started

    assert len(set(ids)) == COUNT
    bodies = [json.loads(body) for body in receiver.bodies()]
    assert len(bodies) == 2 * COUNT
    by_id: dict[str, list[str]] = {}
    for body in bodies:
        by_id.setdefault(body["id"], []).append(body["status"])
    assert set(by_id) == set(ids)
    assert all(statuses == ["starting", "succeeded"] for statuses in by_id.values())
    assert Counter(d.attempt for d in sim.deliveries) == {1: 2 * COUNT}
    print(f"{COUNT} predictions, {len(bodies)} deliveries in {elapsed:.2f} s")
    assert elapsed < 20
