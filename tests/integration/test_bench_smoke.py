"""Smoke run of the benchmarks (`python -m bench.run --quick`): every row is produced, timings
unchecked.

Benchmarks are not tests; this only keeps `make bench` from rotting. The quick run measures a few
pages against its own throw-away database and queues, then removes them.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    *("1a", "1b", "1c", "1d"),
    *("2a", "2b", "2c"),
    *("3a", "3b", "3c"),
    *("4a", "4b", "4c", "4d"),
    *("5a", "5b", "5c"),
    *("6a", "6b", "6c", "6d", "6e"),
    *("7a", "7b", "7c"),
    *("8a", "8b", "8c", "8d", "8e", "8f"),
    *("9a", "9b", "9c", "9d", "9e"),
    *("10a", "10b", "10c", "10d", "10e"),
    *("11a", "11b", "11c", "11d", "11e", "11f", "11g", "11h"),
    *("12a", "12e", "12b", "12c", "12d"),
    *("13a", "13b", "13c"),
    *("14a", "14b", "14c", "14d", "14e", "14f", "14g"),
    *("15a", "15b", "15c", "15d"),
    *("16a", "16f", "16b", "16c", "16d", "16e"),
    *("17a", "17b", "17c", "17d"),
    *("18a", "18b", "18c", "18d"),
    *("19a", "19b"),
]
# The quick run of every section, 11 (OCR with a real worker and a Celery anchor), 13 and 14
# (OCR of sample pages and tables) included: about 7 min on a quiet 2-core machine.
SMOKE_TIMEOUT_S = 900


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Replaces the suite's per-test clean-up: the bench builds and removes its own service,
    database and queues, and needs none of the in-process app the suite's fixture would start."""


async def test_quick_bench_writes_every_row(tmp_path: Path) -> None:
    """Awaits the bench without blocking the suite's event loop: the session's broker
    connections keep answering heartbeats through the minutes it runs."""
    results = tmp_path / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_GATEWAY_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "bench.run", "--quick", "--results", str(results)),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        printed, _ = await asyncio.wait_for(process.communicate(), SMOKE_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    output = printed.decode(errors="replace")
    assert process.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## Machine and versions" in text
    table = {
        match[1]: match[0]
        for match in re.finditer(r"^\| (\d+[a-z]) \|.*\|$", text, flags=re.MULTILINE)
    }
    assert sorted(table) == sorted(ROWS), text
    for key, line in table.items():
        result = line.rstrip(" |").rsplit("|", 1)[1].strip()
        assert not result.startswith(("error", "no data")), f"row {key}: {line}"
        # Every row has a number unless its tool is missing on this machine (pdftoppm).
        if not result.startswith("skipped"):
            assert re.search(r"\d", line.split("|")[5]), f"row {key} has no median: {line}"
