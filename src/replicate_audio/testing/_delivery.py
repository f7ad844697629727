"""The simulator's clock (a timer heap on one thread) and its webhook sender (ordered lanes)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs
import httpx

from .faults import DeliveryRecord, Faults
from .signing import generate_secret, sign_webhook

_log = logging.getLogger("replicate_audio.testing.simulator")

#: The pauses before each retry of a failed terminal webhook. cog retries its terminal
#: webhook with urllib3's ``Retry(total=12, backoff_factor=0.1)``: no pause before the first
#: retry, then 0.1 * 2 ** (n - 1) seconds. Replicate documents that "the final retry is sent
#: about 1 minute after the prediction completed", so the schedule stops at the last retry
#: inside that minute: the ninth, 51 s after the first attempt.
DEFAULT_RETRY_DELAYS = (0.0, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6)


class Scheduler:
    """Runs callbacks at given times on one daemon thread; callbacks must be quick."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="replicate-sim-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._cond:
            entry = (time.monotonic() + max(delay, 0.0), next(self._counter), callback)
            heapq.heappush(self._heap, entry)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # one broken callback must not stop the clock
                _log.exception("simulator callback failed")


@attrs.define
class Delivery:
    """One webhook copy on its way: the signed body is made fresh for every attempt."""

    prediction_id: str
    webhook_id: str
    event: str
    status: str
    url: str
    body: bytes
    terminal: bool
    faults: Faults
    copy: int = 1
    attempt: int = 1
    not_before: float = 0.0
    # Set once this delivery's first attempt has finished (the early_webhooks fault waits on it).
    attempted: threading.Event | None = attrs.field(default=None, eq=False, repr=False)


@attrs.define
class _Lane:
    queue: deque[Delivery] = attrs.Factory(deque)
    held: list[Delivery] = attrs.Factory(list)
    busy: bool = False
    gated: bool = False  # queued deliveries wait until the prediction's create has answered


class WebhookSender:
    """Sends each prediction's webhooks in order (one lane per prediction), retrying terminal ones.

    Lanes run on a small thread pool; waits (the ``delay`` fault, retry backoff) go back to
    the scheduler, so a slow receiver or a long backoff never holds a worker. A lane opened
    with :meth:`hold` queues but sends nothing until :meth:`open`.
    """

    def __init__(
        self,
        *,
        secret: str,
        scheduler: Scheduler,
        retry_delays: Sequence[float],
        timeout: float,
        record: Callable[[DeliveryRecord], None],
        workers: int = 32,
    ) -> None:
        self._secret = secret
        self._stranger = generate_secret()  # signs the wrong_signature fault
        self._scheduler = scheduler
        self._retry_delays = tuple(retry_delays)
        self._record = record
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}
        self._closed = False
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="replicate-sim-webhook")
        self._http = httpx.Client(
            follow_redirects=False,
            timeout=timeout,
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
            headers={"user-agent": "replicate-audio-simulator", "content-type": "application/json"},
        )

    def hold(self, prediction_id: str) -> None:
        """Open the prediction's lane gated: what it queues waits for :meth:`open`."""
        with self._lock:
            self._lanes.setdefault(prediction_id, _Lane()).gated = True

    def open(self, prediction_id: str) -> None:
        """Lift the gate of :meth:`hold` and start sending, in the order queued."""
        with self._lock:
            lane = self._lanes.get(prediction_id)
            if lane is None:
                return
            lane.gated = False
        self._wake(lane)

    def enqueue(self, delivery: Delivery) -> None:
        """Queue every copy of *delivery* (or hold them, for the out-of-order fault)."""
        delivery.not_before = time.monotonic() + delivery.faults.delay
        copies = [
            attrs.evolve(delivery, copy=n) for n in range(1, max(delivery.faults.duplicates, 1) + 1)
        ]
        with self._lock:
            lane = self._lanes.setdefault(delivery.prediction_id, _Lane())
            if delivery.faults.out_of_order:
                lane.held.extend(copies)
                return
            lane.queue.extend(copies)
        self._wake(lane)

    def release(self, prediction_id: str) -> None:
        """The prediction has finished: send its held deliveries, newest first."""
        with self._lock:
            lane = self._lanes.get(prediction_id)
            if lane is None or not lane.held:
                return
            lane.queue.extend(reversed(lane.held))
            lane.held.clear()
        self._wake(lane)

    def pending(self) -> int:
        """How many webhook copies are waiting to be sent (held ones included)."""
        with self._lock:
            return sum(len(lane.queue) + len(lane.held) for lane in self._lanes.values())

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    def _wake(self, lane: _Lane) -> None:
        with self._lock:
            if lane.busy or lane.gated or self._closed or not lane.queue:
                return
            lane.busy = True
            self._pool.submit(self._pump, lane)

    def _resume(self, lane: _Lane) -> None:
        with self._lock:
            if self._closed:
                return
            self._pool.submit(self._pump, lane)

    def _pump(self, lane: _Lane) -> None:
        while True:
            with self._lock:
                if self._closed or not lane.queue:
                    lane.busy = False
                    return
                delivery = lane.queue[0]
            wait = delivery.not_before - time.monotonic()
            if wait > 0:
                self._scheduler.call_later(wait, lambda: self._resume(lane))
                return  # the lane stays busy until the scheduler resumes it
            ok = self._post(delivery)
            if delivery.attempted is not None:
                delivery.attempted.set()
            with self._lock:
                if not ok and delivery.terminal and delivery.attempt <= len(self._retry_delays):
                    delay = self._retry_delays[delivery.attempt - 1]
                    delivery.attempt += 1
                    delivery.not_before = time.monotonic() + delay
                else:
                    lane.queue.popleft()

    def _post(self, delivery: Delivery) -> bool:
        faults = delivery.faults
        secret = self._stranger if faults.wrong_signature else self._secret
        headers = sign_webhook(
            delivery.body,
            secret,
            webhook_id=delivery.webhook_id,
            timestamp=int(time.time()) + faults.clock_skew,
        )
        status_code: int | None = None
        error: str | None = None
        try:
            response = self._http.post(delivery.url, content=delivery.body, headers=headers)
            status_code = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._record(
            DeliveryRecord(
                prediction_id=delivery.prediction_id,
                webhook_id=delivery.webhook_id,
                event=delivery.event,
                status=delivery.status,
                url=delivery.url,
                attempt=delivery.attempt,
                copy=delivery.copy,
                status_code=status_code,
                error=error,
                dropped=False,
                time=time.time(),
                body=delivery.body,
                headers=headers,
            )
        )
        return status_code is not None and 200 <= status_code < 300
