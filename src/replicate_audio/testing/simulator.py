"""ReplicateSimulator: a local Replicate on 127.0.0.1 running predictions, sending signed webhooks.

For tests, local development and the demo; it needs only the core dependencies.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from types import TracebackType

from ..errors import ConfigurationError, ReplicateAudioError
from ._answers import SimulatorAnswers
from ._book import PredictionBook
from ._connection import SimulatorConnection
from ._deadlines import MIN_DEADLINE
from ._delivery import DEFAULT_RETRY_DELAYS, Scheduler, WebhookSender
from ._intake import CreateDesk
from ._introspection import SimulatorIntrospection
from ._limits import BURST_SECONDS, CREATE_RATE_LIMIT, READ_RATE_LIMIT, RateLimits
from ._listing import PAGE_SIZE
from ._outputs import OutputFiles
from ._predictions import FORMATS
from ._simulator_http import SimulatorServer
from .faults import DeliveryRecord, DownloadRecord, Faults, ModelSpec
from .signing import generate_secret

__all__ = ["DEFAULT_RETRY_DELAYS", "MUSICGEN_VERSION", "RETENTION", "ReplicateSimulator"]

#: "input parameters, output values, output files, and logs are automatically removed after
#: an hour" (Replicate's data retention page), in seconds.
RETENTION = 3600.0

#: The fixed version id of the simulated ``meta/musicgen``.
MUSICGEN_VERSION = "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"


class ReplicateSimulator(SimulatorConnection, SimulatorIntrospection, SimulatorAnswers):
    """A real HTTP server that answers like Replicate's API and sends signed webhooks.

    The real ``replicate`` client works against it unmodified. It serves
    ``stability-ai/stable-audio-2.5`` (create by model) and ``meta/musicgen`` (create by
    version :data:`MUSICGEN_VERSION`); add more with :meth:`add_model`.

    Args:
        host: the address to listen on.
        port: the port (0: any free port; read it back from :attr:`url`).
        api_token: the bearer token it accepts (random by default).
        secret: the ``whsec_...`` webhook signing secret (random by default).
        run_time: seconds a prediction takes, unless its model says otherwise.
        faults: misbehaviour for every prediction (see :class:`Faults`).
        seed: seeds the generator that decides which webhooks ``drop_ratio`` drops.
        webhook_retry_delays: the pauses before each retry of a failed terminal webhook (a
            connection error or any answer but 2xx); by default cog's backoff, the last
            retry 51 s after the first attempt (:data:`DEFAULT_RETRY_DELAYS`).
        webhook_timeout: seconds to wait for a webhook receiver to answer.
        page_size: predictions per page of ``GET /v1/predictions`` (Replicate's: 100); also
            settable later as ``sim.page_size``.
        retention: seconds after a prediction completes until its input, output, logs and
            output files are removed (Replicate's: an hour); then ``GET`` and the list show
            ``data_removed: true`` and the files answer 410.
        create_rate_limit: creates a minute (Replicate's: 600), by token bucket; a create
            over it answers 429 with ``Retry-After``. ``None``: unlimited.
        read_rate_limit: every other API call a minute (Replicate's: 3000); file downloads
            are not counted. ``None``: unlimited.
        rate_limit_burst: seconds of requests at the full rate each bucket holds, the burst
            an idle account may send at once (Replicate publishes none; by default a minute).
        min_deadline: the shortest ``Cancel-After`` a create may ask for (Replicate's: 5 s);
            a test knob, lowered to keep deadline tests short. A prediction past its
            deadline is ``aborted`` if it had not started, else ``canceled``.

    Example:
        >>> with ReplicateSimulator(run_time=0.1) as sim:
        ...     prediction = sim.client().predictions.create(
        ...         model="stability-ai/stable-audio-2.5", input={"prompt": "rain", "duration": 1})
        ...     sim.wait_for_prediction(prediction.id)["status"]
        'succeeded'
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_token: str | None = None,
        secret: str | None = None,
        run_time: float = 1.0,
        faults: Faults | None = None,
        seed: int = 0,
        webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        webhook_timeout: float = 5.0,
        page_size: int = PAGE_SIZE,
        retention: float = RETENTION,
        create_rate_limit: float | None = CREATE_RATE_LIMIT,
        read_rate_limit: float | None = READ_RATE_LIMIT,
        rate_limit_burst: float = BURST_SECONDS,
        min_deadline: float = MIN_DEADLINE,
    ) -> None:
        if not retention > 0:
            raise ConfigurationError(
                "retention", f"must be a number of seconds > 0, not {retention!r}"
            )
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigurationError("page_size", f"must be a whole number >= 1, not {page_size!r}")
        self.host, self._port = host, port
        self.page_size = page_size
        self.api_token = api_token or f"r8_sim_{secrets.token_hex(16)}"
        self.secret = secret or generate_secret()
        self.webhook_retry_delays = tuple(webhook_retry_delays)
        self.webhook_timeout = webhook_timeout
        self._lock = threading.RLock()
        self._book = PredictionBook(
            run_time=run_time,
            retention=retention,
            lock=self._lock,
            seed=seed,
            record=self._record_delivery,
        )
        self._models: dict[str, ModelSpec] = {}
        self._stopping = threading.Event()
        self._deployments: dict[str, str] = {}
        self._limits = RateLimits(
            create=create_rate_limit, read=read_rate_limit, burst=rate_limit_burst
        )
        self._desk = CreateDesk(
            book=self._book,
            models=self._models,
            deployments=self._deployments,
            lock=self._lock,
            stopping=self._stopping,
            limits=self._limits,
            min_deadline=min_deadline,
        )
        self._deliveries: list[DeliveryRecord] = []
        self._downloads: list[DownloadRecord] = []
        self._server: SimulatorServer | None = None
        self._scheduler: Scheduler | None = None
        self._sender: WebhookSender | None = None
        self._outputs: OutputFiles | None = None
        self.faults = faults or Faults()
        self.add_model("stability-ai/stable-audio-2.5")
        self.add_model("meta/musicgen", version=MUSICGEN_VERSION, output_format="wav")

    # -- life ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (pass it as the client's base_url)."""
        if self._server is None:
            raise ReplicateAudioError("the simulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReplicateSimulator:
        """Bind the port and start serving; :meth:`stop` undoes it. Returns ``self``.

        Example:
            >>> sim = ReplicateSimulator().start()
            >>> sim.url.startswith("http://127.0.0.1:")
            True
            >>> sim.stop()
        """
        if self._server is not None:
            raise ReplicateAudioError("this simulator was already started; make a new one")
        self._server = SimulatorServer((self.host, self._port), self)
        self._outputs = OutputFiles()
        self._scheduler = Scheduler()
        self._sender = WebhookSender(
            secret=self.secret,
            scheduler=self._scheduler,
            retry_delays=self.webhook_retry_delays,
            timeout=self.webhook_timeout,
            record=self._record_delivery,
        )
        self._book.base_url = self.url
        self._book.call_later = self._scheduler.call_later
        self._book.sender = self._sender
        outputs = self._outputs
        self._book.make_output = lambda p: outputs.audio(p.duration, p.output_format)
        self._scheduler.start()
        threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name="replicate-sim-http",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving, drop pending webhooks and delete the synthesised audio."""
        self._stopping.set()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._sender is not None:
            self._sender.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._outputs is not None:
            self._outputs.close()

    def __enter__(self) -> ReplicateSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ReplicateSimulator:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    # -- configuration ---------------------------------------------------------------------

    def add_model(
        self,
        name: str,
        *,
        version: str | None = None,
        run_time: float | None = None,
        output_format: str = "mp3",
        output_as_list: bool = False,
        output_files: int = 1,
        default_duration: float = 8.0,
        start_delay: float = 0.0,
    ) -> ModelSpec:
        """Serve (or replace) a model; with *version* it can also be created by version.

        Its predictions wait *start_delay* seconds ``starting`` (queued, as behind a cold
        boot) before their *run_time* begins.

        Example:
            >>> ReplicateSimulator().add_model("acme/beeps", run_time=0.05).name
            'acme/beeps'
        """
        if output_format not in FORMATS:
            raise ConfigurationError(
                "output_format", f"must be one of {FORMATS}, not {output_format!r}"
            )
        spec = ModelSpec(
            name=name,
            version=version,
            run_time=run_time,
            output_format=output_format,
            output_as_list=output_as_list,
            output_files=output_files,
            default_duration=default_duration,
            start_delay=start_delay,
        )
        with self._lock:
            self._models[name] = spec
        return spec

    def add_deployment(self, name: str, *, model: str) -> None:
        """Serve a deployment *name* (``owner/name``) that runs the served *model*, for
        ``POST /v1/deployments/{owner}/{name}/predictions``.

        Example:
            >>> ReplicateSimulator().add_deployment("acme/sfx", model="meta/musicgen")
        """
        with self._lock:
            if model not in self._models:
                raise ConfigurationError("model", f"no model {model!r} is served; add_model first")
            self._deployments[name] = model

    @property
    def faults(self) -> Faults:
        """The faults every new prediction gets (unless some were queued for it)."""
        return self._desk.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._desk.faults = faults

    def queue_faults(self, faults: Faults) -> None:
        """Give *faults* to the next prediction created (its ``rate_limit_creates`` 429s first).

        Example:
            >>> ReplicateSimulator().queue_faults(Faults(duplicates=3))
        """
        self._desk.queue(faults)

    def set_faults(self, prediction_id: str, faults: Faults) -> None:
        """Replace the faults of one prediction, for its events and downloads from now on."""
        prediction = self._prediction(prediction_id)
        with self._lock:
            prediction.faults = faults
