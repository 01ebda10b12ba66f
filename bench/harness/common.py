"""Constants, the bench's log line and its error."""

from __future__ import annotations

import time
from pathlib import Path

TIMES = "\u00d7"
MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SAMPLES = REPO / "tests" / "data"
GEOTOPO = SAMPLES / "GeoTopo-komprimiert.pdf"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ROOT = "postgresql://postgres@127.0.0.1:5432"
LIMIT_CONCURRENCY = 32
SERVICE_START_TIMEOUT_S = 120.0
UNBOUNDED_HIGH_WATER = 1_000_000_000
MIN_CYCLES = 3  # stop/start cycles measured even when a small start is over at once
RESUME_BOUND_S = 40.0  # longest wait for a start to move pages (the dispatcher backs off 30 s)
STOP_BOUND_S = 15.0  # a stop should end publishing long before this
RESUME_TARGET_S = 2.0  # a start should get pages moving within a poll interval or two


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class BenchError(RuntimeError):
    """A measurement could not be made (service down, a bound reached, a wrong result)."""
