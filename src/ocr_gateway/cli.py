"""`ocr-gateway migrate | serve | dispatch | worker | run`: one command per process, and `run`
(behind `make run`) to start them all on one machine."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from ocr_gateway.core.settings import OCR_ENGINES, get_settings

log = logging.getLogger("ocr_gateway.cli")

# Open connections get this long to finish after a SIGTERM (the launcher allows for it).
SERVE_GRACEFUL_SHUTDOWN_S = 20
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
    handling (e.g. while it is still importing) ends it quietly."""
    try:
        _run(argv)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _run(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="ocr-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create the database if missing and run the migrations")
    serve = commands.add_parser("serve", help="serve the API, with the results consumer")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=_tcp_port, default=None)
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
        choices=OCR_ENGINES,
        default=None,
        help="OCR engine (default OCR_GATEWAY_OCR_ENGINE)",
    )
    commands.add_parser(
        "dispatch", help="publish pages to the broker when an operator starts (any number may run)"
    )
    run = commands.add_parser(
        "run",
        help="start the API, a dispatcher and OCR workers on this machine, start again any that "
        "dies, and stop them all in order on Ctrl-C or SIGTERM (what `make run` does)",
    )
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=_tcp_port, default=None)
    run.add_argument(
        "--workers",
        type=_not_negative,
        default=None,
        help="OCR workers to start (default OCR_GATEWAY_RUN_WORKERS)",
    )
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
        # The API alone: publishing is the dispatcher's process (`ocr-gateway dispatch`).
        # uvicorn handles SIGTERM and SIGINT: it stops taking requests, lets open ones finish,
        # then raises the signal again for the handler it found. For SIGTERM that handler exits
        # normally, so the pools' semaphores are released (a death by signal leaves them to
        # multiprocessing's resource tracker, which warns about each on stderr).
        signal.signal(signal.SIGTERM, _exit_normally)
        uvicorn.run(
            create_app(settings, run_dispatcher=False),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,
            timeout_graceful_shutdown=SERVE_GRACEFUL_SHUTDOWN_S,
        )
    elif args.command == "dispatch":
        from ocr_gateway.dispatch.process import run_dispatcher

        sys.exit(run_dispatcher(settings))
    elif args.command == "run":
        from ocr_gateway.launcher.run import run_gateway

        workers = settings.run_workers if args.workers is None else args.workers
        sys.exit(
            run_gateway(
                settings,
                host=args.host or settings.host,
                port=args.port or settings.port,
                workers=workers,
            )
        )
    elif args.command == "worker":
        from ocr_gateway.worker.consumer import run_worker

        overrides: dict[str, object] = {}
        if args.processes is not None:
            overrides["ocr_processes"] = args.processes
        if args.engine is not None:
            overrides["ocr_engine"] = args.engine
        if overrides:
            settings = settings.model_copy(update=overrides)
        sys.exit(run_worker(settings))


def _exit_normally(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
