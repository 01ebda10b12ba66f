"""`ocr-gateway migrate | serve`: the commands behind `make run`."""

from __future__ import annotations

import argparse
import logging

from ocr_gateway.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ocr-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create the database if missing and run the migrations")
    serve = commands.add_parser("serve", help="serve the API with the results consumer")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    settings = get_settings()

    if args.command == "migrate":
        from ocr_gateway.db.migrate import migrate

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        migrate(settings)
    elif args.command == "serve":
        import uvicorn

        from ocr_gateway.app import create_app

        uvicorn.run(
            create_app(settings),
            host=args.host or settings.host,
            port=args.port or settings.port,
            log_config=None,
            timeout_graceful_shutdown=20,
        )


if __name__ == "__main__":
    main()
