"""The ``replicate-audio`` command: one argparse subcommand per task (``simulator``, ...)."""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, ReplicateAudioError
from .jobs import Job, JobStatus, utcnow

if TYPE_CHECKING:
    from .app import ReplicateAudio
    from .recovery import Reconciled

__all__ = ["main"]

#: Each subcommand registers itself here: name -> (add its arguments, run it -> exit code).
Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, tuple[str, Command]] = {}


def command(
    name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    """Register a subcommand: ``@command("name", "help", add_arguments)`` over its runner."""

    def register(
        run: Callable[[argparse.Namespace], int],
    ) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = (help, (arguments, run))
        return run

    return register


def _app_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        metavar="MODULE:NAME",
        help="your ReplicateAudio, or a function returning one (its store, processors and "
        "dispatcher); by default one is built from the environment",
    )


def load_app(spec: str | None, **defaults: Any) -> ReplicateAudio:
    """The app's :class:`ReplicateAudio` named by *spec* (``package.module:name``, where *name*
    is one or a function returning one), imported from the current directory as gunicorn
    and uvicorn do; without *spec*, ``ReplicateAudio(**defaults)`` from the environment.

    Raises:
        ConfigurationError: *spec* is malformed, cannot be imported, or names something else.
    """
    from .app import ReplicateAudio

    if spec is None:
        return ReplicateAudio(**defaults)
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ConfigurationError("--app", f"must look like package.module:audio, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as error:
        raise ConfigurationError("--app", f"cannot load {spec!r}: {error}") from error
    if callable(found) and not isinstance(found, ReplicateAudio):
        found = found()
    if not isinstance(found, ReplicateAudio):
        kind = type(found).__name__
        raise ConfigurationError("--app", f"{spec!r} is a {kind}, not a ReplicateAudio")
    return found


def _simulator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8787, help="port (0: any free port)")
    parser.add_argument("--run-time", type=float, default=3.0, help="seconds each prediction takes")
    parser.add_argument("--token", default=None, help="API token to accept (random by default)")
    parser.add_argument("--secret", default=None, help="whsec_ signing secret (random)")


@command("simulator", "run a local Replicate that sends signed webhooks", _simulator_arguments)
def _simulator(args: argparse.Namespace) -> int:
    from .testing.simulator import ReplicateSimulator

    simulator = ReplicateSimulator(
        host=args.host,
        port=args.port,
        api_token=args.token,
        secret=args.secret,
        run_time=args.run_time,
    )
    try:
        simulator.start()
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    try:
        print(f"Replicate simulator listening on {simulator.url}", flush=True)
        print("Point your app at it with these variables (outputs are served from it too):")
        for name, value in simulator.environ().items():
            print(f"{name}={value}")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
    finally:
        simulator.stop()
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for audio")
    parser.add_argument("--folder", type=Path, default=None, help="where to write (a temp dir)")
    parser.add_argument("--port", type=int, default=0, help="port of the example app")


@command("demo", "the whole flow: simulator, example app, 4 pieces of audio", _demo_arguments)
def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(timeout=args.timeout, folder=args.folder, port=args.port)


def _jobs_arguments(parser: argparse.ArgumentParser) -> None:
    statuses = [status.value for status in JobStatus]
    parser.add_argument("--status", action="append", choices=statuses, help="only these")
    parser.add_argument("--limit", type=int, default=50)
    _app_argument(parser)


@command("jobs", "list jobs in REPLICATE_AUDIO_DATABASE, oldest first", _jobs_arguments)
def _jobs(args: argparse.Namespace) -> int:
    import anyio

    statuses = [JobStatus(value) for value in args.status] if args.status else None
    try:
        store = load_app(args.app, sweep_interval=0).store
        jobs: list[Job] = anyio.run(
            functools.partial(
                store.list_jobs, statuses=statuses, updated_before=utcnow(), limit=args.limit
            )
        )
    except ReplicateAudioError as error:
        print(error, file=sys.stderr)
        return 1
    for job in jobs:
        reason = f"  {job.error}" if job.error else ""
        prediction = job.prediction_id or "-"
        print(
            f"{job.id}  {prediction:<26}  {job.status.value:<10} "
            f"{job.content_type}/{job.content_id}{reason}"
        )
    return 0


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the id of a dead job (or of its prediction)")
    _app_argument(parser)


def _on_job(
    args: argparse.Namespace,
    action: Callable[[ReplicateAudio], Callable[[str], Any]],
    done: JobStatus,
) -> int:
    """Run one facade method on ``args.job_id``, print the job, and exit 0 if it is *done*."""
    import anyio

    try:
        audio = load_app(args.app, sweep_interval=0)
        job: Job = anyio.run(action(audio), args.job_id)
    except ReplicateAudioError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{job.id}  {job.status.value}{'  ' + job.error if job.error else ''}")
    return 0 if job.status is done else 1


@command("replay", "run a dead job again from its recorded prediction", _replay_arguments)
def _replay(args: argparse.Namespace) -> int:
    return _on_job(args, lambda audio: audio.replay, JobStatus.COMPLETED)


def _cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", help="the id of the job (or of its prediction)")
    _app_argument(parser)


@command("cancel", "cancel a job's prediction on Replicate", _cancel_arguments)
def _cancel(args: argparse.Namespace) -> int:
    return _on_job(args, lambda audio: audio.cancel, JobStatus.CANCELED)


def _reconcile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="only say what would be recorded")
    parser.add_argument(
        "--older-than", type=float, default=0.0, metavar="SECONDS",
        help="only jobs with no news for this long (default 0: every unfinished job)",
    )  # fmt: skip
    _app_argument(parser)


@command(
    "reconcile",
    "ask Replicate about every unfinished job now and record the ends that were missed",
    _reconcile_arguments,
)
def _reconcile(args: argparse.Namespace) -> int:
    import anyio

    async def once(audio: ReplicateAudio) -> list[tuple[Reconciled, Job]]:
        reconcile = functools.partial(
            audio.reconcile, older_than=args.older_than, dry_run=args.dry_run
        )
        if args.dry_run:
            found = await reconcile()
        else:
            # What is recorded goes to the app's dispatcher: processed here (in process)
            # or sent to its workers, before this command returns.
            async with audio.dispatcher.running(audio.process):
                found = await reconcile()
        return [(entry, await audio.get_job(entry.job.id)) for entry in found]

    try:
        found = anyio.run(once, load_app(args.app, sweep_interval=0))
    except ReplicateAudioError as error:
        print(error, file=sys.stderr)
        return 1
    for entry, now in found:
        status = entry.prediction_status or "?"
        print(
            f"{now.id}  {now.prediction_id}  {status:<10}  {entry.detail}; "
            f"the job is {now.status.value}{': ' + now.error if now.error else ''}"
        )
    if args.dry_run:
        counted = sum(entry.detail == "would record its end" for entry, _ in found)
        print(f"{len(found)} unfinished jobs looked at; would record {counted}")
    else:
        counted = sum(entry.moved for entry, _ in found)
        print(f"{len(found)} unfinished jobs looked at; recorded {counted}")
    return 0


def _verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--headers",
        type=Path,
        required=True,
        metavar="FILE",
        help="the headers: a JSON object, or 'Name: value' lines from a log",
    )
    parser.add_argument(
        "--body", type=Path, required=True, metavar="FILE", help="the raw body, byte for byte"
    )
    parser.add_argument(
        "--secret",
        action="append",
        metavar="whsec_...",
        help="a signing secret (repeatable); default REPLICATE_WEBHOOK_SECRET",
    )
    parser.add_argument(
        "--any-time",
        action="store_true",
        help="check as of the delivery's own timestamp (an old capture)",
    )
    parser.epilog = (
        "example: replicate-audio verify --headers headers.txt --body body.json --any-time"
    )  # fmt: skip


@command(
    "verify", "check a captured webhook delivery as the webhook route would", _verify_arguments
)
def _verify(args: argparse.Namespace) -> int:
    from .config import Settings
    from .errors import WebhookVerificationError
    from .operator import check_delivery, parse_headers

    try:
        settings = Settings.from_env()
        secrets = args.secret or settings.webhook_secrets
        if not secrets:
            raise ConfigurationError(
                "REPLICATE_WEBHOOK_SECRET", "set it, or pass --secret (see replicate-audio secret)"
            )
        headers = parse_headers(args.headers.read_text())
        event = check_delivery(
            headers, args.body.read_bytes(), secrets,
            tolerance=settings.webhook_tolerance, any_time=args.any_time,
        )  # fmt: skip
    except WebhookVerificationError as error:
        print(f"invalid: {error}", file=sys.stderr)
        return 1
    except (OSError, ReplicateAudioError) as error:
        print(error, file=sys.stderr)
        return 1
    prediction = event.prediction
    print(f"valid: {event.webhook_id}, prediction {prediction.id} {prediction.status}")
    return 0


@command("secret", "print the account's webhook signing secret", lambda parser: None)
def _secret(args: argparse.Namespace) -> int:
    import anyio

    from .config import Settings
    from .replicate_api import PredictionsAPI

    async def read(settings: Settings) -> str:
        async with PredictionsAPI(settings) as api:
            return await api.webhook_secret()

    try:
        settings = Settings.from_env()
        if not settings.api_token:
            raise ConfigurationError("REPLICATE_API_TOKEN", "set it to read the account's secret")
        print(anyio.run(read, settings))
    except ReplicateAudioError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def _recovery_arguments(parser: argparse.ArgumentParser) -> None:
    """The recovery knobs, as options that override the app's (and the environment's)."""
    for option, variable, text in (
        ("--lease", "REPLICATE_AUDIO_LEASE", "seconds a claim lasts unrenewed"),
        ("--sweep-interval", "REPLICATE_AUDIO_SWEEP_INTERVAL", "seconds between sweeps; 0: none"),
        ("--reconcile-after", "REPLICATE_AUDIO_RECONCILE_AFTER", "seconds of silence before "
         "a job's prediction is fetched"),
    ):  # fmt: skip
        parser.add_argument(option, type=float, metavar="SECONDS", help=f"{text} ({variable})")


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=4, help="jobs processed at once")
    _recovery_arguments(parser)
    parser.add_argument(
        "--queue", help="the Dramatiq queue to consume (default replicate_audio; with --app, "
        "the queue of the app's dispatcher)"
    )  # fmt: skip
    _app_argument(parser)


@command("worker", "process jobs from REPLICATE_AUDIO_BROKER_URL (Dramatiq)", _worker_arguments)
def _worker(args: argparse.Namespace) -> int:
    try:
        from .dispatch.dramatiq import DramatiqDispatcher, run_worker

        if args.app is None:
            queue = args.queue or "replicate_audio"
            audio = load_app(None, dispatcher=DramatiqDispatcher(queue_name=queue))
        elif args.queue is not None:
            message = "with --app, the queue is the one of the app's DramatiqDispatcher"
            raise ConfigurationError("--queue", message)
        else:
            audio = load_app(args.app)
        audio.set_recovery(
            lease=args.lease,
            sweep_interval=args.sweep_interval,
            reconcile_after=args.reconcile_after,
        )
        dispatcher = audio.dispatcher
        if not isinstance(dispatcher, DramatiqDispatcher):
            kind = type(dispatcher).__name__
            message = f"its dispatcher is a {kind}, not a DramatiqDispatcher"
            raise ConfigurationError("--app", message)
    except (ImportError, ReplicateAudioError) as error:
        print(error, file=sys.stderr)
        return 1
    try:
        queue = dispatcher.queue_name
        print(f"worker consuming queue {queue!r} with {args.threads} threads", flush=True)
        run_worker(audio, threads=args.threads)
    except ReplicateAudioError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        dispatcher.close()
    print("worker stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand.

    Example:
        >>> build_parser().parse_args(["simulator", "--port", "0"]).port
        0
    """
    parser = argparse.ArgumentParser(
        prog="replicate-audio", description="Webhook-driven Replicate audio generation."
    )
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help, (arguments, run)) in COMMANDS.items():
        sub = subcommands.add_parser(name, help=help, description=help)
        arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``replicate-audio`` command line and return its exit code.

    Example:
        >>> main(["simulator", "--port", "8787"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
