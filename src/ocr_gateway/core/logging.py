"""Logging to the console and to `logs/<YYYY-MM-DD>.log`, written off the event loop.

Records go through a `QueueHandler`; a `QueueListener` thread does the actual writes, so a
coroutine that logs never waits on the disk.
"""

from __future__ import annotations

import atexit
import datetime as dt
import logging
import logging.handlers
import queue
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class DailyFileHandler(logging.Handler):
    """Writes to `<dir>/<YYYY-MM-DD>.log` and switches to a new file when the date changes."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self._date: dt.date | None = None
        self._stream: logging.FileHandler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        today = dt.date.fromtimestamp(record.created)
        if today != self._date or self._stream is None:
            if self._stream is not None:
                self._stream.close()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._stream = logging.FileHandler(
                self.directory / f"{today.isoformat()}.log", encoding="utf-8"
            )
            self._stream.setFormatter(self.formatter)
            self._date = today
        self._stream.emit(record)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


_listener: logging.handlers.QueueListener | None = None


def configure_logging(logs_dir: Path, level: str = "INFO") -> None:
    """Route the root logger through a queue to the console and the daily file (idempotent)."""
    global _listener
    if _listener is not None:
        return
    formatter = logging.Formatter(FORMAT)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    daily = DailyFileHandler(logs_dir)
    daily.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, console, daily, respect_handler_level=False)
    _listener.start()
    root = logging.getLogger()
    root.handlers = [logging.handlers.QueueHandler(records)]
    root.setLevel(level.upper())
    for noisy in (
        "aiormq",
        "aio_pika",
        "sqlalchemy.engine",
        "multipart",
        "python_multipart",
        "httpx",  # a line per webhook attempt; the sender logs outcomes itself
        "httpcore",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    atexit.register(stop_logging)


def stop_logging() -> None:
    """Flush and close the log files (called at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for handler in _listener.handlers:
            handler.close()
        _listener = None
