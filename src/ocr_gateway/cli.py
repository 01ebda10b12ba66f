"""`ocr-gateway migrate | serve | dispatch | worker | run`: one command per process, and `run`
(behind `make run`) to start them all on one machine. `ocr-gateway keys` and `ocr-gateway
tenants` manage client keys and tenants straight in the database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ocr_gateway.core.settings import OCR_ENGINES, Settings, get_settings

if TYPE_CHECKING:
    from ocr_gateway.tenants.repository import KeyRow
    from ocr_gateway.tenants.service import TenantService

log = logging.getLogger("ocr_gateway.cli")

# Open connections get this long to finish after a SIGTERM (the launcher allows for it).
SERVE_GRACEFUL_SHUTDOWN_S = 20
EXIT_INTERRUPTED = 130
# A command refused: bad arguments, an unknown key or tenant, an unreachable database, or an
# API that would listen off the loopback unprotected. The reason is one line on stderr.
EXIT_REFUSED = 2


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
    _add_management_commands(commands)
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command in ("serve", "run"):
        _refuse_if_exposed(settings, args.host or settings.host)

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
    elif args.command in ("keys", "tenants"):
        _manage(settings, args)


def _refuse(reason: str) -> None:
    print(f"ocr-gateway: {reason}", file=sys.stderr)
    sys.exit(EXIT_REFUSED)


def _refuse_if_exposed(settings: Settings, host: str) -> None:
    from ocr_gateway.tenants.exposure import exposure_refusal

    refusal = exposure_refusal(settings, host)
    if refusal is not None:
        _refuse(refusal)


def _add_management_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser("keys", help="client API keys: create, list, revoke")
    key_commands = keys.add_subparsers(dest="action", required=True)
    create = key_commands.add_parser(
        "create",
        help="make a key for a tenant (created if new) and print it, once, with the new "
        "tenant's webhook secret",
    )
    create.add_argument("--tenant", required=True)
    create.add_argument("--label", default=None)
    listing = key_commands.add_parser(
        "list", help="one line per key: id, tenant, label, created, active or revoked"
    )
    listing.add_argument("--tenant", default=None)
    revoke = key_commands.add_parser("revoke", help="revoke a key (refused within 5 s)")
    revoke.add_argument("key_id")
    tenants = commands.add_parser("tenants", help="tenants: rotate a webhook secret")
    tenant_commands = tenants.add_subparsers(dest="action", required=True)
    rotate = tenant_commands.add_parser(
        "rotate-secret", help="give the tenant a new webhook signing secret and print it, once"
    )
    rotate.add_argument("name")


def _manage(settings: Settings, args: argparse.Namespace) -> None:
    """Run one `keys` or `tenants` command and print its lines; one line on stderr and exit
    2 when it is refused."""
    from sqlalchemy.exc import SQLAlchemyError

    from ocr_gateway.core.errors import GatewayError, describe

    try:
        lines = asyncio.run(_with_tenant_service(settings, _management_action(args)))
    except GatewayError as exc:
        _refuse(exc.detail)
    except (OSError, SQLAlchemyError) as exc:
        _refuse("cannot use the database: " + " ".join(describe(exc).split()))
    else:
        for line in lines:
            print(line)


def _management_action(args: argparse.Namespace) -> Callable[[TenantService], Awaitable[list[str]]]:
    async def create(tenants: TenantService) -> list[str]:
        created = await tenants.create_key(tenant=args.tenant, label=args.label)
        lines = [f"key_id: {created.key_id}", f"key: {created.key}"]
        if created.webhook_secret is not None:
            lines.append(f"webhook_secret: {created.webhook_secret}")
        return lines

    async def listing(tenants: TenantService) -> list[str]:
        return [_key_line(row) for row in await tenants.list_keys(tenant=args.tenant)]

    async def revoke(tenants: TenantService) -> list[str]:
        row = await tenants.revoke_key(key_id=args.key_id)
        assert row.revoked_at is not None
        return [f"key_id: {row.key_id}", f"revoked_at: {row.revoked_at.isoformat()}"]

    async def rotate(tenants: TenantService) -> list[str]:
        return [f"webhook_secret: {await tenants.rotate_secret(tenant=args.name)}"]

    actions = {
        ("keys", "create"): create,
        ("keys", "list"): listing,
        ("keys", "revoke"): revoke,
        ("tenants", "rotate-secret"): rotate,
    }
    return actions[(args.command, args.action)]


async def _with_tenant_service(
    settings: Settings, action: Callable[[TenantService], Awaitable[list[str]]]
) -> list[str]:
    from ocr_gateway.db.engine import build_engine, build_session_factory
    from ocr_gateway.tenants.service import TenantService

    engine = build_engine(settings, pool_size=1)
    try:
        return await action(TenantService(settings, build_session_factory(engine)))
    finally:
        await engine.dispose()


def _key_line(row: KeyRow) -> str:
    """`key_id, tenant, label (- if none), created_at, active | revoked <time>`, tab-separated."""
    label = " ".join((row.label or "").split()) or "-"
    state = "active" if row.revoked_at is None else f"revoked {row.revoked_at.isoformat()}"
    return "\t".join((row.key_id, row.tenant, label, row.created_at.isoformat(), state))


def _exit_normally(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
