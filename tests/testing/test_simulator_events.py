"""The simulator's webhook events: the sequence cog's runner sends, and the 500 ms throttle."""

from __future__ import annotations

import itertools
import json
from typing import Any

from recording_receiver import Receiver

from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing._book import PROGRESS_STEPS, THROTTLE_INTERVAL

MODEL = "stability-ai/stable-audio-2.5"


def _run(
    sim: ReplicateSimulator, receiver: Receiver, model: str = MODEL, **params: Any
) -> list[dict[str, Any]]:
    """Create a prediction (every event asked for, unless filtered); the bodies received."""
    sim.client().predictions.create(
        model=model, input={"duration": 1}, webhook=f"{receiver.url}/hook", **params
    )
    sim.wait_idle()
    return [json.loads(body) for body in receiver.bodies()]


def test_logs_webhooks_are_throttled_to_one_per_500_ms(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """A run that logs a progress line every 0.2 s sends a logs webhook at most every 0.5 s:
    fewer webhooks than lines, each carrying all the logs so far."""
    sim.add_model(MODEL, run_time=2.5)
    bodies = _run(sim, receiver)
    sent = [d for d in sim.deliveries if d.ok]
    logs = [d for d in sent if d.event == "logs"]
    assert 1 <= len(logs) < PROGRESS_STEPS
    # The interval counts from the last webhook sent of any kind, start included.
    gaps = [later.time - earlier.time for earlier, later in itertools.pairwise(sent)]
    assert all(gap > THROTTLE_INTERVAL * 0.8 for gap in gaps[:-1]), gaps
    final = bodies[-1]["logs"]
    assert all(final.startswith(body["logs"] or "") for body in bodies)


def test_a_single_file_comes_with_completed_only(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """start, logs..., completed: cog sends no output webhook for a single (non-list) output."""
    sim.add_model(MODEL, run_time=1.5)
    bodies = _run(sim, receiver)
    events = [d.event for d in sim.deliveries]
    assert events[0] == "start"
    assert events[-1] == "completed"
    assert "output" not in events
    assert set(events[1:-1]) == {"logs"}
    assert all(body["output"] is None for body in bodies[:-1])
    assert isinstance(bodies[-1]["output"], str)


def test_a_list_output_grows_with_output_webhooks(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """A model yielding three files (at 1.5, 2.25 and 3 s) sends output webhooks whose lists
    grow file by file, then completed with all three. Logs are filtered out here: asked for,
    their webhooks would share the throttle and could hold the outputs back."""
    sim.add_model("acme/loops", run_time=3.0, output_as_list=True, output_files=3)
    events_filter = ["start", "output", "completed"]
    bodies = _run(sim, receiver, "acme/loops", webhook_events_filter=events_filter)
    events = [d.event for d in sim.deliveries]
    assert events[0] == "start"
    assert events[-1] == "completed"
    assert "output" in events
    final = bodies[-1]["output"]
    assert [url.rsplit("/", 1)[1] for url in final] == ["out-0.mp3", "out-1.mp3", "out-2.mp3"]
    for event, body in zip(events, bodies, strict=True):
        if event == "output":
            assert body["status"] == "processing"
            assert 1 <= len(body["output"]) <= 3
            assert body["output"] == final[: len(body["output"])]


def test_completed_is_never_throttled(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """A 0.05 s run: completed follows start well within 500 ms, and is sent all the same."""
    sim.add_model(MODEL, run_time=0.05)
    bodies = _run(sim, receiver)
    assert [d.event for d in sim.deliveries] == ["start", "completed"]
    assert [body["status"] for body in bodies] == ["starting", "succeeded"]


def test_filtered_out_events_do_not_hold_back_the_others(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """Asking for logs only, the first progress line is sent at once: the start event that was
    filtered out never started a throttle interval."""
    sim.add_model(MODEL, run_time=1.0)
    sim.client().predictions.create(
        model=MODEL, input={}, webhook=f"{receiver.url}/hook", webhook_events_filter=["logs"]
    )
    sim.wait_idle()
    first = json.loads(receiver.bodies()[0])
    assert first["status"] == "processing"
    assert first["logs"].startswith("Using seed")
    assert "%|" not in first["logs"]  # the line printed as processing began, not a later one
