"""An OCR worker as a real subprocess (`python -m ocr_gateway.worker`), and its log lines.

Configured only through the `OCR_GATEWAY_*` environment, like a worker on another machine. Used
by the worker tests and by `make bench-ocr`. A log line that never comes raises
`LogLineMissing` (with the worker's last lines); a test turns it into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator

from ocr_gateway.core.settings import Settings


class LogLineMissing(Exception):
    """The worker exited, or a timeout passed, before it logged the line waited for."""


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker elsewhere would have: the broker and the two queue names."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OCR_GATEWAY_")}
    env.update(
        {
            "OCR_GATEWAY_RABBITMQ_URL": settings.rabbitmq_url.get_secret_value(),
            "OCR_GATEWAY_DATABASE_URL": settings.database_url,
            "OCR_GATEWAY_PAGES_QUEUE": settings.pages_queue,
            "OCR_GATEWAY_RESULTS_QUEUE": settings.results_queue,
            "OCR_GATEWAY_LOGS_DIR": str(settings.logs_dir),
            "OCR_GATEWAY_PUBLISH_TIMEOUT_S": str(settings.publish_timeout_s),
            "OCR_GATEWAY_OCR_ENGINE": "rapidocr",
            "OCR_GATEWAY_OCR_PROCESSES": "1",
        }
    )
    env.update(extra)
    return env


class WorkerProcess:
    """A worker subprocess and the log lines it wrote to stderr."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    async def wait_for(self, text: str, count: int = 1, timeout: float = 90) -> str:
        """The `count`-th log line containing `text`; raises LogLineMissing, with the log, if
        the worker exits or `timeout` passes first."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.matching(text)) < count:
            if self.process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                await asyncio.sleep(0.2)  # let the reader collect the last lines
                log = "\n".join(self.lines[-30:])
                raise LogLineMissing(
                    f"worker never logged {text!r} (exit {self.process.returncode}):\n{log}"
                )
            await asyncio.sleep(0.05)
        return self.matching(text)[count - 1]


@contextlib.asynccontextmanager
async def worker_process(
    settings: Settings, *, grace: float | None = None, start_timeout: float = 90, **env: str
) -> AsyncIterator[WorkerProcess]:
    """Start a worker in its own process group and wait until it consumes.

    On exit the group is killed: at once (`grace=None`), or after a SIGTERM and up to `grace`
    seconds for the worker to finish its page and stop by itself.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ocr_gateway.worker",
        env=worker_env(settings, **env),
        cwd=settings.logs_dir.parent,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    worker = WorkerProcess(process)
    try:
        await worker.wait_for("worker consuming", timeout=start_timeout)
        yield worker
    finally:
        if grace is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        await worker.reader
