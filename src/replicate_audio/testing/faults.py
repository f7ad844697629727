"""What the simulator can get wrong on purpose (``Faults``), and the records it keeps for tests."""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import ConfigurationError

__all__ = ["CreateRecord", "DeliveryRecord", "DownloadRecord", "Faults", "ModelSpec"]


def _not_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigurationError(f"Faults.{attribute.name}", f"must be >= 0, not {value!r}")


def _error_statuses(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not all(isinstance(status, int) and 400 <= status <= 599 for status in value):
        message = f"must be HTTP error statuses (400-599), not {value!r}"
        raise ConfigurationError(f"Faults.{attribute.name}", message)


@attrs.frozen(kw_only=True)
class Faults:
    """Misbehaviour for a simulator (``sim.faults``) or for one prediction.

    Each field is off by default. Download counts apply per prediction ("the first N
    downloads of this prediction's output").

    Attributes:
        duplicates: send every webhook this many times in all, all with the same
            ``webhook-id`` (0 or 1: once).
        out_of_order: hold this prediction's webhooks and send them newest first, once the
            prediction has finished (the terminal event arrives before ``start``).
        drop_ratio: the share of webhooks never sent (drawn from the simulator's seeded
            random generator; 1.0 drops them all). ``GET`` still shows the real state.
        delay: seconds to wait before sending each webhook.
        fail_with: the prediction fails with this error message instead of succeeding.
        cancel: the prediction is canceled half way through its run.
        download_errors: the first N downloads answer 503.
        truncate_downloads: the first N downloads send half the file, then close.
        slow_downloads: the first N downloads stall ``slow_download_seconds`` after the
            first bytes.
        slow_download_seconds: how long a slow download stalls.
        expired: the data is removed as soon as the prediction has finished, as when its
            retention has passed: downloads answer 410 (``data_removed``), and ``GET`` and
            the list show ``data_removed: true`` with ``output``, ``logs`` and ``input``
            gone. Its webhooks still carry the output, as sent when it finished.
        wrong_signature: webhooks are signed with a secret nobody knows.
        clock_skew: seconds added to the ``webhook-timestamp`` (negative: in the past).
        rate_limit_creates: the next N creates answer 429 with ``Retry-After``, as the
            simulator's rate limits do (``create_rate_limit``), with the same body.
        retry_after: the ``Retry-After`` seconds of those 429s.
        create_errors: the next creates (after those 429s) answer these statuses, one
            each, in order, with Replicate's problem-details bodies: ``(402,)`` for an
            account out of credit, ``(503, 500)`` for an API having a bad minute.
        early_webhooks: the race of a fast or cached model. The prediction finishes
            (``succeeded`` with its output file ready, or ``failed`` with ``fail_with``)
            and its webhooks, ``completed`` included, are sent *before* the create's HTTP
            response is written: the create answers only once the first attempt of the
            ``completed`` webhook has finished, answered or failed (a failed one is
            retried afterwards as usual). The create still answers the prediction as it
            was accepted (``starting``).
        answer_delay: seconds the create's answer is held after the prediction was
            created (it runs meanwhile; its webhooks wait for the answer, as ever): a
            client killed in that window has a prediction it never heard of.

    Example:
        >>> Faults(duplicates=3, drop_ratio=0.5).duplicates
        3
    """

    duplicates: int = attrs.field(default=0, validator=_not_negative)
    out_of_order: bool = False
    drop_ratio: float = attrs.field(default=0.0, validator=_not_negative)
    delay: float = attrs.field(default=0.0, validator=_not_negative)
    fail_with: str | None = None
    cancel: bool = False
    download_errors: int = attrs.field(default=0, validator=_not_negative)
    truncate_downloads: int = attrs.field(default=0, validator=_not_negative)
    slow_downloads: int = attrs.field(default=0, validator=_not_negative)
    slow_download_seconds: float = attrs.field(default=2.0, validator=_not_negative)
    expired: bool = False
    wrong_signature: bool = False
    clock_skew: int = 0
    rate_limit_creates: int = attrs.field(default=0, validator=_not_negative)
    retry_after: int = attrs.field(default=1, validator=_not_negative)
    create_errors: tuple[int, ...] = attrs.field(
        default=(), converter=tuple, validator=_error_statuses
    )
    early_webhooks: bool = False
    answer_delay: float = attrs.field(default=0.0, validator=_not_negative)


@attrs.frozen(kw_only=True)
class ModelSpec:
    """One model the simulator serves: its name, optional version, run time and output shape.

    Example:
        >>> ModelSpec(name="meta/musicgen", run_time=0.5).output_format
        'mp3'
    """

    name: str
    version: str | None = None
    run_time: float | None = None
    output_format: str = "mp3"
    output_as_list: bool = False
    #: How many files a list output has (each one yielded in turn, with an output webhook).
    output_files: int = 1
    default_duration: float = 8.0
    #: Seconds a prediction waits in the queue (``starting``) before its run begins, as
    #: behind a cold boot; a ``Cancel-After`` deadline passing meanwhile aborts it.
    start_delay: float = attrs.field(default=0.0, validator=_not_negative)


@attrs.frozen(kw_only=True)
class CreateRecord:
    """One create request the simulator received, whatever it answered.

    ``body`` is the parsed JSON (``None`` when it was not JSON); ``prediction_id`` is
    ``None`` when the create was refused.
    """

    path: str
    body: Any
    headers: dict[str, str] = attrs.field(repr=False)
    status_code: int
    prediction_id: str | None
    time: float


@attrs.frozen(kw_only=True)
class DeliveryRecord:
    """One webhook attempt: which event, to where, and how the receiver answered.

    ``status_code`` is ``None`` when no answer came (``error`` says why) or when the
    delivery was ``dropped`` on purpose. ``copy`` counts duplicates from 1; ``attempt``
    counts retries of that copy from 1.
    """

    prediction_id: str
    webhook_id: str
    event: str
    status: str
    url: str
    attempt: int
    copy: int
    status_code: int | None
    error: str | None
    dropped: bool
    time: float
    body: bytes = attrs.field(repr=False)
    headers: dict[str, str] = attrs.field(repr=False)

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300


@attrs.frozen(kw_only=True)
class DownloadRecord:
    """One output download served: the path, the status sent, and the fault applied if any."""

    prediction_id: str | None
    path: str
    status_code: int
    fault: str | None
    time: float
