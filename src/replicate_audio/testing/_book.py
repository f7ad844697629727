"""The simulator's prediction book: every prediction's lifecycle on the clock, and its webhooks."""

from __future__ import annotations

import functools
import json
import random
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._delivery import Delivery, WebhookSender
from ._predictions import (
    FORMATS,
    NOT_FOUND,
    TERMINAL,
    Problem,
    SimulatedPrediction,
    input_seconds,
    new_prediction_id,
)
from ._sync import data_uri, inline_files
from .faults import DeliveryRecord, Faults, ModelSpec

#: "Requests for event types output and logs will be sent at most once every 500ms" (Replicate's
#: HTTP reference, ``webhook_events_filter``); cog's ``ResponseThrottler`` with its default
#: ``COG_THROTTLE_RESPONSE_INTERVAL`` of 0.5 s. Like cog's, it skips an update (a later one
#: carries the same state), and the last event sent of any kind starts the interval.
THROTTLE_INTERVAL = 0.5
THROTTLED_EVENTS = frozenset({"logs", "output"})
#: Progress lines a run logs (as a tqdm bar would), spread over its processing time.
PROGRESS_STEPS = 10


class PredictionBook:
    """All predictions, their lifecycle on the scheduler, and the webhooks each step emits."""

    def __init__(
        self,
        *,
        run_time: float,
        retention: float,
        lock: threading.RLock,
        seed: int,
        record: Callable[[DeliveryRecord], None],
    ) -> None:
        self.run_time = run_time
        self.retention = retention
        self.lock = lock
        self.predictions: dict[str, SimulatedPrediction] = {}
        self._rng = random.Random(seed)
        self._record = record
        self._last_created = 0  # microseconds since the epoch: creation times never repeat
        # Wired by the simulator when it starts.
        self.base_url = ""
        self.call_later: Callable[[float, Callable[[], None]], None] = lambda d, c: None
        self.sender: WebhookSender | None = None
        self.make_output: Callable[[SimulatedPrediction], Path | None] = lambda p: None

    def create(
        self,
        *,
        spec: ModelSpec,
        version: str,
        data: dict[str, Any],
        webhook: str | None,
        events: frozenset[str],
        faults: Faults,
        deployment: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        """Book a prediction and its lifecycle: *deadline* seconds from now (``Cancel-After``)
        it is aborted if it has not started, canceled if it is running."""
        duration = 8.0 if spec.default_duration is None else spec.default_duration
        for key in ("duration", "seconds_total"):
            if key in data:
                duration = input_seconds(data[key], key)
        output_format = data.get("output_format", spec.output_format)
        if output_format not in FORMATS:
            raise Problem(
                422, "Input validation failed", f"- input.output_format: must be one of {FORMATS}"
            )
        data = json.loads(json.dumps(data))
        run_time = self.run_time if spec.run_time is None else spec.run_time
        with self.lock:
            # Unique to the microsecond (the precision shown), so list cursors never tie.
            self._last_created = max(time.time_ns() // 1000, self._last_created + 1)
            prediction = SimulatedPrediction(
                id=new_prediction_id(),
                model=spec,
                version=version,
                input=data,
                webhook=webhook,
                events=events,
                faults=faults,
                duration=duration,
                output_format=output_format,
                created_at=self._last_created / 1_000_000,
                retention=self.retention,
                deployment=deployment,
            )
            if deadline is not None:
                prediction.deadline = prediction.created_at + deadline
            self.predictions[prediction.id] = prediction
            if self.sender is not None:
                # Queued in order from now on, but sent only once the create has answered.
                self.sender.hold(prediction.id)
            self.emit(prediction, "start")
            answer = prediction.to_json(self.base_url)
        queued = spec.start_delay
        self._schedule_run(prediction, queued, run_time)
        if faults.cancel:
            self.call_later(queued + run_time * 0.5, lambda: self.finish(prediction, "canceled"))
        outcome = "failed" if faults.fail_with is not None else "succeeded"
        self.call_later(queued + run_time, lambda: self.finish(prediction, outcome))
        if deadline is not None:
            self.call_later(deadline, lambda: self._deadline_passed(prediction))
        return answer

    def _deadline_passed(self, prediction: SimulatedPrediction) -> None:
        """Replicate "sets the prediction's status to aborted if the deadline is reached
        before it starts running, and canceled if the deadline is reached while it's running"."""
        with self.lock:
            self.finish(prediction, "aborted" if prediction.status == "starting" else "canceled")

    def _schedule_run(
        self, prediction: SimulatedPrediction, queued: float, run_time: float
    ) -> None:
        """Book the run's steps: after *queued* seconds in the queue it starts processing at a
        quarter of its run time, then logs progress lines and, for a list output, yields its
        files one by one, evenly."""
        begin, span = queued + run_time * 0.25, run_time * 0.75
        self.call_later(begin, lambda: self._process(prediction))
        for step in range(1, PROGRESS_STEPS):
            at = begin + span * step / PROGRESS_STEPS
            self.call_later(at, functools.partial(self._progress, prediction, step))
        if prediction.model.output_as_list:
            count = prediction.model.output_files
            for index in range(count):
                at = begin + span * (index + 1) / count
                self.call_later(at, functools.partial(self._yield_output, prediction, index))

    def answered(self, prediction_id: str) -> None:
        """The create has answered: the prediction's webhooks may leave, in order."""
        if self.sender is not None:
            self.sender.open(prediction_id)

    def finish_early(self, prediction: SimulatedPrediction) -> None:
        """The early_webhooks fault: run *prediction* to its end now, output file made,
        and let its webhooks leave before the create answers."""
        failing = prediction.faults.fail_with is not None
        if not failing:
            self.make_output(prediction)
        self._process(prediction)
        self.finish(prediction, "failed" if failing else "succeeded")
        self.answered(prediction.id)

    def sync_answer(self, prediction: SimulatedPrediction) -> dict[str, Any]:
        """What a ``Prefer: wait`` create answers: the prediction as it is now, and, once it
        has succeeded, its output files as ``data:`` URIs."""
        path = self.make_output(prediction) if prediction.status == "succeeded" else None
        with self.lock:
            shown = prediction.to_json(self.base_url, live=True)
        if path is not None:
            uri = data_uri(path, prediction.output_format)
            shown["output"] = inline_files(shown["output"], f"{self.base_url}/files/", uri)
        return shown

    def get(self, prediction_id: str) -> SimulatedPrediction:
        with self.lock:
            prediction = self.predictions.get(prediction_id)
        if prediction is None:
            raise Problem(404, *NOT_FOUND)
        return prediction

    def _process(self, prediction: SimulatedPrediction) -> None:
        with self.lock:
            if prediction.status != "starting":
                return
            prediction.status = "processing"
            prediction.started_at = time.time()
            prediction.logs += f"Using seed: 1\nGenerating {prediction.duration:g} s of audio\n"
            self.emit(prediction, "logs")

    def _progress(self, prediction: SimulatedPrediction, step: int) -> None:
        with self.lock:
            if prediction.status != "processing":
                return
            done = step * 100 // PROGRESS_STEPS
            prediction.logs += (
                f"{done:3d}%|{'#' * step:<{PROGRESS_STEPS}}| {step}/{PROGRESS_STEPS}\n"
            )
            self.emit(prediction, "logs")

    def _yield_output(self, prediction: SimulatedPrediction, index: int) -> None:
        """A list output grows by one file, as cog's runner appends each yielded item and
        sends an ``output`` webhook for it (a single file gets none: it comes with completed)."""
        with self.lock:
            if prediction.status != "processing":
                return
            prediction.output = self.output_urls(prediction)[: index + 1]
            self.emit(prediction, "output")

    def output_urls(self, prediction: SimulatedPrediction) -> list[str]:
        """The URLs of all of *prediction*'s output files, in order."""
        if prediction.model.output_as_list:
            names = [f"out-{n}" for n in range(prediction.model.output_files)]
        else:
            names = ["output"]
        ext = prediction.output_format
        return [f"{self.base_url}/files/{prediction.id}/{name}.{ext}" for name in names]

    def finish(self, prediction: SimulatedPrediction, status: str) -> None:
        """Move *prediction* to *status* (terminal), unless it already finished."""
        with self.lock:
            if prediction.status in TERMINAL:
                return
            now = time.time()
            if status != "aborted":  # an aborted prediction never started
                prediction.started_at = prediction.started_at or now
            if status == "succeeded":
                urls = self.output_urls(prediction)
                prediction.output = urls if prediction.model.output_as_list else urls[0]
                prediction.logs += "Done.\n"
            elif status == "failed":
                prediction.error = prediction.faults.fail_with
                prediction.logs += f"Traceback (most recent call last):\n{prediction.error}\n"
            prediction.status = status
            prediction.completed_at = now
            prediction.finished.set()
            self.emit(prediction, "completed")
            if self.sender is not None:
                self.sender.release(prediction.id)

    def emit(self, prediction: SimulatedPrediction, event: str) -> None:
        """Queue the webhook for *event*, if asked for; called with the lock held, in order."""
        terminal = event == "completed"
        if prediction.webhook is None or event not in prediction.events or self.sender is None:
            if terminal:
                prediction.terminal_attempted.set()
            return
        now = time.monotonic()
        last = prediction.last_sent
        if event in THROTTLED_EVENTS and last is not None and now - last < THROTTLE_INTERVAL:
            return
        prediction.last_sent = now
        delivery = Delivery(
            prediction_id=prediction.id,
            webhook_id=webhook_id(),
            event=event,
            status=prediction.status,
            url=prediction.webhook,
            body=json.dumps(prediction.to_json(self.base_url, live=True)).encode(),
            terminal=terminal,
            faults=prediction.faults,
            attempted=prediction.terminal_attempted if terminal else None,
        )
        ratio = prediction.faults.drop_ratio
        if not (ratio and self._rng.random() < ratio):
            self.sender.enqueue(delivery)
            return
        if terminal:
            prediction.terminal_attempted.set()
        self._record(
            DeliveryRecord(
                prediction_id=prediction.id,
                webhook_id=delivery.webhook_id,
                event=event,
                status=prediction.status,
                url=prediction.webhook,
                attempt=0,
                copy=0,
                status_code=None,
                error="dropped (drop_ratio fault)",
                dropped=True,
                time=time.time(),
                body=delivery.body,
                headers={},
            )
        )

    def busy(self) -> int:
        """How many predictions have not finished yet."""
        with self.lock:
            return sum(p.status not in TERMINAL for p in self.predictions.values())


def webhook_id() -> str:
    """A fresh delivery id in the ``msg_...`` form."""
    return f"msg_{secrets.token_hex(12)}"
