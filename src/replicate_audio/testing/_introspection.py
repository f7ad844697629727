"""Reading a simulator: its records of creates, webhooks and downloads, and waits on them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import PredictionError
from ._book import PredictionBook
from ._delivery import WebhookSender
from ._intake import CreateDesk
from ._outputs import DownloadPlan, OutputFiles
from ._predictions import TERMINAL, Problem, SimulatedPrediction
from .faults import CreateRecord, DeliveryRecord, DownloadRecord


class SimulatorIntrospection:
    """What :class:`~replicate_audio.testing.simulator.ReplicateSimulator` shows of itself.

    Its base class: the simulator sets the attributes declared here.
    """

    _lock: threading.RLock
    _book: PredictionBook
    _desk: CreateDesk
    _sender: WebhookSender | None
    _deliveries: list[DeliveryRecord]
    _downloads: list[DownloadRecord]
    _outputs: OutputFiles | None

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

    @property
    def creates(self) -> list[CreateRecord]:
        """Every create request received, refused ones included, oldest first."""
        with self._lock:
            return list(self._desk.records)

    @property
    def deliveries(self) -> list[DeliveryRecord]:
        """Every webhook attempt (and every dropped one, ``dropped=True``), oldest first."""
        with self._lock:
            return list(self._deliveries)

    @property
    def downloads(self) -> list[DownloadRecord]:
        """Every output download served, oldest first."""
        with self._lock:
            return list(self._downloads)

    def get_prediction(self, prediction_id: str) -> dict[str, Any]:
        """The prediction as ``GET /v1/predictions/{id}`` shows it.

        Raises:
            PredictionError: no prediction has that id (``status`` 404).
        """
        prediction = self._prediction(prediction_id)
        with self._lock:
            return prediction.to_json(self.url)

    def wait_until(self, predicate: Callable[[], object], *, timeout: float = 10.0) -> None:
        """Poll *predicate* until it is true.

        Raises:
            TimeoutError: it was still false after *timeout* seconds.

        Example:
            >>> sim.wait_until(lambda: len(sim.deliveries) >= 2)  # doctest: +SKIP
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"still waiting after {timeout} s")
            time.sleep(0.01)

    def wait_for_prediction(self, prediction_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the prediction has finished, and return it as ``GET`` shows it."""
        self.wait_until(lambda: self._prediction(prediction_id).status in TERMINAL, timeout=timeout)
        return self.get_prediction(prediction_id)

    def wait_for_deliveries(
        self, count: int, *, prediction_id: str | None = None, timeout: float = 10.0
    ) -> list[DeliveryRecord]:
        """Wait until at least *count* webhook attempts were made (of one prediction, if given).

        Example:
            >>> [d.event for d in sim.wait_for_deliveries(2, prediction_id=p.id)]  # doctest: +SKIP
            ['start', 'completed']
        """

        def attempts() -> list[DeliveryRecord]:
            return [
                d
                for d in self.deliveries
                if not d.dropped and prediction_id in (None, d.prediction_id)
            ]

        self.wait_until(lambda: len(attempts()) >= count, timeout=timeout)
        return attempts()

    def wait_idle(self, *, timeout: float = 10.0) -> None:
        """Wait until every prediction has finished and no webhook is left to send."""
        sender = self._sender
        self.wait_until(
            lambda: self._book.busy() == 0 and (sender is None or sender.pending() == 0),
            timeout=timeout,
        )

    def _prediction(self, prediction_id: str) -> SimulatedPrediction:
        try:
            return self._book.get(prediction_id)
        except Problem:
            raise PredictionError(f"no prediction {prediction_id!r}", status=404) from None

    def _record_delivery(self, record: DeliveryRecord) -> None:
        with self._lock:
            self._deliveries.append(record)

    def _plan_download(self, prediction_id: str, name: str, path: str) -> DownloadPlan:
        with self._lock:
            prediction = self._book.predictions.get(prediction_id)
        if self._outputs is None:
            plan = DownloadPlan(503)
        else:
            plan = self._outputs.plan(prediction, name, self._lock)
        record = DownloadRecord(
            prediction_id=prediction_id,
            path=path,
            status_code=plan.status,
            fault=plan.fault,
            time=time.time(),
        )
        with self._lock:
            self._downloads.append(record)
        return plan
