"""LISTEN on a PostgreSQL channel for as long as the process runs, over a connection of its own.

The dispatcher, the event hub and the webhook sender each keep one. A NOTIFY sent while the
connection is down is lost, so `on_connected` runs after every (re)connection and `on_ping`
after each keep-alive, for the caller to catch up from its tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

log = logging.getLogger(__name__)

RECONNECT_S = 1.0

Notified = Callable[[str], None]


async def listen_forever(
    dsn: str,
    channel: str,
    on_notify: Notified,
    *,
    ping_s: float,
    what: str,
    on_connected: Callable[[], None] | None = None,
    on_ping: Callable[[], None] | None = None,
) -> None:
    """Call `on_notify(payload)` for each NOTIFY on `channel`; reconnect when the connection
    drops (a database restart), and ping it every `ping_s` so a dead one is noticed."""

    def deliver(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        on_notify(payload)

    while True:
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(dsn, timeout=10)
            await connection.add_listener(channel, deliver)
            if on_connected is not None:
                on_connected()
            while not connection.is_closed():
                await asyncio.sleep(ping_s)
                await connection.execute("SELECT 1")
                if on_ping is not None:
                    on_ping()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s lost its connection: %s", what, exc)
            await asyncio.sleep(RECONNECT_S)
        finally:
            if connection is not None and not connection.is_closed():
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)
