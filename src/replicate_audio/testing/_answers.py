"""The simulator's answers to the API calls that are not creates: models, lists, gets, cancels."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._book import PredictionBook
from ._listing import list_page
from ._models import find_model, model_json
from .faults import ModelSpec


class SimulatorAnswers:
    """The JSON a :class:`~replicate_audio.testing.simulator.ReplicateSimulator` answers
    reads and cancels with. Its base class: the simulator sets the attributes declared here.
    """

    _lock: threading.RLock
    _book: PredictionBook
    _models: dict[str, ModelSpec]
    page_size: int

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

    def _model(self, name: str) -> dict[str, Any]:
        with self._lock:
            spec = find_model(self._models, name)
            runs = sum(p.model.name == name for p in self._book.predictions.values())
        return model_json(spec, run_count=runs)

    def _list(self, query: str) -> dict[str, Any]:
        with self._lock:
            predictions = list(self._book.predictions.values())
            return list_page(predictions, query=query, base_url=self.url, page_size=self.page_size)

    def _json(self, prediction_id: str) -> dict[str, Any]:
        prediction = self._book.get(prediction_id)
        with self._lock:
            return prediction.to_json(self.url)

    def _cancel(self, prediction_id: str) -> dict[str, Any]:
        prediction = self._book.get(prediction_id)
        self._book.finish(prediction, "canceled")
        with self._lock:
            return prediction.to_json(self.url)
