"""`ocr-gateway migrate | serve | dispatch | worker`: the commands behind `make run`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from ocr_gateway.core.settings import get_settings
from ocr_gateway.launcher.children import Supervisor, start_dispatcher, start_worker

log = logging.getLogger("ocr_gateway.cli")

ENGINE_CHOICES = ("rapidocr", "tesseract")
WORKER_KILL_AFTER_S = 10.0
DISPATCH_KILL_AFTER_S = 10.0
EXIT_INTERRUPTED = 130


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _tcp_port(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError("must be a TCP port, 1-65535")
    return number


def _not_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def main(argv: list[str] | None = None) -> None:
    """The `ocr-gateway` command. A Ctrl-C that lands before a command has installed its own
    handling (e.g. while a child started by `serve` is still importing) ends it quietly."""
    try:
        _run(argv)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _run(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="ocr-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create the database if missing and run the migrations")
    serve = commands.add_parser(
        "serve", help="serve the API with the results consumer, and OCR workers beside it"
    )
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=_tcp_port, default=None)
    serve.add_argument(
        "--workers",
        type=_not_negative,
        default=None,
        help="OCR workers to start beside the API (default OCR_GATEWAY_RUN_WORKERS)",
    )
    worker = commands.add_parser(
        "worker", help="run an OCR worker: pages queue in, OCR, results queue out"
    )
    worker.add_argument(
        "--processes",
        type=_positive,
        default=None,
        help="OCR processes, and pages held at once (default OCR_GATEWAY_OCR_PROCESSES)",
    )
    worker.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default=None,
        help="OCR engine (default OCR_GATEWAY_OCR_ENGINE)",
    )
    # Given by `serve` to the workers it starts: stop when the serving process is gone.
    worker.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    dispatch = commands.add_parser(
        "dispatch",
        help="publish pages to the broker when an operator starts (`serve` runs one itself)",
    )
    dispatch.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = get_settings()

    if args.command == "migrate":
        from ocr_gateway.db.migrate import migrate

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        migrate(settings)
    elif args.command == "serve":
        import uvicorn

        from ocr_gateway.app import create_app
        from ocr_gateway.core.logging import configure_logging

        configure_logging(settings.logs_dir, settings.log_level)
        count = settings.run_workers if args.workers is None else args.workers
        # uvicorn re-raises a SIGTERM or SIGINT after its graceful shutdown; exit through the
        # `finally` below instead, so the dispatcher and the workers are stopped in turn.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _exit_cleanly)
        children = Supervisor()
        children.add("dispatcher", start_dispatcher)
        children.add("OCR worker", start_worker, count)
        children.start()
        try:
            uvicorn.run(
                create_app(settings, run_dispatcher=False),
                host=args.host or settings.host,
                port=args.port or settings.port,
                log_config=None,
                timeout_graceful_shutdown=20,
            )
        finally:
            children.stop("dispatcher", grace=settings.publish_timeout_s + DISPATCH_KILL_AFTER_S)
            children.stop("OCR worker", grace=settings.ocr_stop_grace_s + WORKER_KILL_AFTER_S)
    elif args.command == "dispatch":
        from ocr_gateway.dispatch.process import run_dispatcher

        sys.exit(run_dispatcher(settings, exit_with_parent=args.exit_with_parent))
    elif args.command == "worker":
        from ocr_gateway.worker.consumer import run_worker

        overrides: dict[str, object] = {}
        if args.processes is not None:
            overrides["ocr_processes"] = args.processes
        if args.engine is not None:
            overrides["ocr_engine"] = args.engine
        if overrides:
            settings = settings.model_copy(update=overrides)
        sys.exit(run_worker(settings, exit_with_parent=args.exit_with_parent))


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
