"""The simulator's front desk for creates: request checks, throttling, queued faults, records."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http import HTTPStatus
from typing import Any

import attrs

from ..errors import ConfigurationError
from ._book import PredictionBook
from ._deadlines import MIN_DEADLINE, requested_deadline
from ._limits import RateLimits, throttled
from ._predictions import NOT_FOUND, UNAUTHENTICATED, Problem
from ._sync import requested_wait
from .faults import CreateRecord, Faults, ModelSpec

EVENTS = frozenset({"start", "output", "logs", "completed"})
_MODEL_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_VERSION = re.compile(r"(?:([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*):)?([0-9a-f]{64})")


def parse_create(
    body: Any, models: Mapping[str, ModelSpec], model_name: str | None
) -> tuple[ModelSpec, str, dict[str, Any], str | None, frozenset[str]]:
    """Check a create request as Replicate would: the model, version, input and webhook."""
    if not isinstance(body, dict):
        raise Problem(400, "Bad request", "The request body must be a JSON object.")
    if model_name is not None:
        spec = models.get(model_name)
        if spec is None:
            raise Problem(404, *NOT_FOUND)
        version = spec.version or "hidden"
    elif _MODEL_NAME.fullmatch(named := str(body.get("version", ""))) and named in models:
        # An official model named where a version goes, as the API accepts it.
        spec = models[named]
        version = spec.version or "hidden"
    else:
        match = _VERSION.fullmatch(str(body.get("version", "")))
        found = [m for m in models.values() if match and m.version == match.group(2)]
        if not match or not found or (match.group(1) and match.group(1) != found[0].name):
            raise Problem(
                422,
                "Invalid version or not permitted",
                "The specified version does not exist (or perhaps you don't have permission "
                "to use it?)",
            )
        spec, version = found[0], match.group(2)
    data = body.get("input", {})
    if not isinstance(data, dict):
        raise Problem(422, "Input validation failed", "- input: must be an object")
    webhook = body.get("webhook")
    if webhook is not None and not (
        isinstance(webhook, str) and re.match(r"https?://[^/\s]+", webhook)
    ):
        raise Problem(422, "Invalid webhook", f"- webhook: {webhook!r} is not an http(s) URL")
    events = body.get("webhook_events_filter") or sorted(EVENTS)
    if not isinstance(events, list) or not set(events) <= EVENTS:
        raise Problem(
            422,
            "Invalid webhook_events_filter",
            f"- webhook_events_filter: must be a subset of {sorted(EVENTS)}",
        )
    return spec, version, data, webhook, frozenset(events)


# What Replicate says with the error statuses a create may get; others get their reason.
_CREATE_ERRORS = {
    401: UNAUTHENTICATED,
    402: (
        "Payment required",
        "You have reached the free time limit. To continue using Replicate, set up billing "
        "at https://replicate.com/account/billing#billing.",
    ),
    404: NOT_FOUND,
    422: ("Input validation failed", "Invalid version or not permitted"),
    500: ("Internal server error", "Something went wrong on our end. Please try again."),
}


def create_error(status: int) -> Problem:
    """The problem a create answers with *status* (a ``create_errors`` fault)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:  # 520-524 and other statuses outside the standard
        reason = "Error"
    title, detail = _CREATE_ERRORS.get(status, (reason, f"{reason}. Please try again."))
    return Problem(status, title, detail)


@attrs.frozen
class CreateAnswer:
    """What a create request answers: status, JSON body, extra headers, the prediction made."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    prediction_id: str | None
    #: Seconds to hold the answer for the model to finish (``Prefer: wait``), if asked.
    wait: float | None = None


class CreateDesk:
    """Answers create requests: 429s while rate limited or throttled by a fault, else checks
    them and books a prediction.

    The faults for new predictions live here too: the standing ones and a queue of one-offs.
    """

    def __init__(
        self,
        *,
        book: PredictionBook,
        models: Mapping[str, ModelSpec],
        deployments: Mapping[str, str],
        lock: threading.RLock,
        stopping: threading.Event,
        limits: RateLimits,
        min_deadline: float = MIN_DEADLINE,
    ) -> None:
        self._book, self._models, self._lock = book, models, lock
        self._limits = limits
        if not min_deadline > 0:
            raise ConfigurationError("min_deadline", f"must be seconds > 0, not {min_deadline!r}")
        #: The shortest ``Cancel-After`` accepted, in seconds.
        self.min_deadline = min_deadline
        self._deployments = deployments
        self._stopping = stopping
        self._faults = Faults()
        self._throttle = 0
        self._errors: deque[int] = deque()
        self._queued: deque[Faults] = deque()
        self.records: list[CreateRecord] = []

    @property
    def faults(self) -> Faults:
        """The standing faults; setting them restarts the count of throttled creates."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._throttle = faults.rate_limit_creates
            self._errors = deque(faults.create_errors)

    def queue(self, faults: Faults) -> None:
        """Queue one-off faults for the next create, adding their throttled creates."""
        with self._lock:
            self._queued.append(faults)
            self._throttle += faults.rate_limit_creates
            self._errors.extend(faults.create_errors)

    def create(
        self,
        path: str,
        body: Any,
        headers: dict[str, str],
        model: str | None,
        deployment: str | None = None,
    ) -> CreateAnswer:
        """Answer one create request and record it; write the answer inside :meth:`answering`.

        *model* is the model of a create by model, *deployment* the deployment of a create
        by deployment; neither for a create by version."""
        extra: dict[str, str] = {}
        prediction_id = None
        wait: float | None = None
        try:
            with self._lock:
                self._limits.check_create()
                if self._throttle > 0:
                    self._throttle -= 1
                    raise throttled((self._queued[0] if self._queued else self._faults).retry_after)
                if self._errors:
                    raise create_error(self._errors.popleft())
                if deployment is not None:
                    model = self._deployments.get(deployment)
                    if model is None:
                        raise Problem(404, *NOT_FOUND)
                wait = requested_wait(headers)
                deadline = requested_deadline(headers, minimum=self.min_deadline)
                spec, version, data, webhook, events = parse_create(body, self._models, model)
                faults = self._queued[0] if self._queued else self._faults
                answer = self._book.create(
                    spec=spec,
                    version=version,
                    data=data,
                    webhook=webhook,
                    events=events,
                    faults=faults,
                    deployment=deployment,
                    deadline=deadline,
                )
                if self._queued:
                    self._queued.popleft()
            status, prediction_id = 201, answer["id"]
        except Problem as problem:
            status, answer, extra = problem.status, problem.body(), problem.headers
        record = CreateRecord(
            path=path,
            body=body,
            headers=headers,
            status_code=status,
            prediction_id=prediction_id,
            time=time.time(),
        )
        with self._lock:
            self.records.append(record)
        if status != 201:
            wait = None
        return CreateAnswer(status, answer, extra, prediction_id, wait)

    @contextmanager
    def answering(self, answer: CreateAnswer) -> Iterator[CreateAnswer]:
        """Around the writing of the answer it yields: the prediction's webhooks leave after
        it, or, with the early_webhooks fault, before it (until the completed one's first
        attempt ends). With ``Prefer: wait`` the webhooks flow as things happen while the
        answer waits for the model, up to the time asked; a finished prediction is answered
        as it ended, its files inlined as ``data:`` URIs."""
        if answer.prediction_id is None:
            yield answer
            return
        prediction = self._book.get(answer.prediction_id)
        try:
            if prediction.faults.answer_delay:
                self._stopping.wait(prediction.faults.answer_delay)
            if prediction.faults.early_webhooks:
                self._book.finish_early(prediction)
                while not prediction.terminal_attempted.wait(0.05):
                    if self._stopping.is_set():
                        break
            if answer.wait is not None:
                self._book.answered(prediction.id)
                deadline = time.monotonic() + answer.wait
                while not prediction.finished.wait(0.05):
                    if self._stopping.is_set() or time.monotonic() > deadline:
                        break
                answer = attrs.evolve(answer, body=self._book.sync_answer(prediction))
            yield answer
        finally:
            self._book.answered(prediction.id)
