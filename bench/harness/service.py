"""The service under test: `ocr-gateway serve` and `ocr-gateway dispatch` as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
from tests.support.net import free_port
from tests.support.waiting import wait_until

from bench.harness.common import SERVICE_START_TIMEOUT_S, BenchError, log

if TYPE_CHECKING:
    from bench.harness.context import Context


class Service:
    """The gateway as it is deployed: `ocr-gateway serve` (the API, its render and inspect pools
    and the results consumer) on a free port, and `ocr-gateway dispatch` (the publisher) beside
    it, each a subprocess configured by environment only, both logging to one file."""

    def __init__(self, ctx: Context, name: str, overrides: dict[str, str]) -> None:
        self.ctx = ctx
        self.name = name
        self.overrides = overrides
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dispatcher: subprocess.Popen[bytes] | None = None
        self._http: httpx.AsyncClient | None = None
        self._children: list[psutil.Process] = []

    @property
    def pid(self) -> int:
        """The API process."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def dispatcher_pid(self) -> int:
        """The process that publishes."""
        assert self.dispatcher is not None
        return self.dispatcher.pid

    @property
    def pids(self) -> set[int]:
        """The processes this service started (their children not included)."""
        return {p.pid for p in (self.proc, self.dispatcher) if p is not None}

    @property
    def log_path(self) -> Path:
        return self.ctx.out / f"service-{self.name}.log"

    def _spawn(self) -> None:
        self.port = free_port()
        # The dispatcher's signed page URLs (MESSAGE_IMAGES=url) name this API's address.
        public = {"OCR_GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{self.port}"}
        env = self.ctx.service_env({**public, **self.overrides})
        command = str(self.ctx.bin / "ocr-gateway")
        with open(self.log_path, "ab") as output:
            self.proc = subprocess.Popen(
                [command, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                cwd=self.ctx.out,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            self.dispatcher = subprocess.Popen(
                [command, "dispatch"],
                env=env,
                cwd=self.ctx.out,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        # trust_env=False: localhost traffic never goes through a proxy from the environment.
        self._http = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}/api/v1", timeout=60, trust_env=False
        )

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "the service is not started"
        return self._http

    async def start(self) -> None:
        self._spawn()
        log(
            f"service '{self.name}' starting on 127.0.0.1:{self.port} (API pid {self.pid},"
            f" dispatcher pid {self.dispatcher_pid})"
        )

        async def ready() -> bool:
            for what, process in (("serve", self.proc), ("dispatch", self.dispatcher)):
                assert process is not None
                if process.poll() is not None:
                    raise BenchError(
                        f"ocr-gateway {what} exited with {process.returncode}; see {self.log_path}"
                    )
            if not await asyncio.to_thread(self.log_count, "dispatcher started"):
                return False
            try:
                response = await self.http.get("/health", timeout=5)
            except httpx.HTTPError:
                return False
            return response.status_code == 200 and response.json().get("status") == "ok"

        started = time.perf_counter()
        await wait_until(
            ready, timeout=SERVICE_START_TIMEOUT_S, interval=0.2, what="service health"
        )
        self._children = self.children()
        log(
            f"service '{self.name}' ready in {time.perf_counter() - started:.1f} s with "
            f"{len(self._children)} child processes"
        )

    def children(self) -> list[psutil.Process]:
        """The descendants of the API and dispatcher processes (the API's pools, mostly)."""
        found: list[psutil.Process] = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                found += psutil.Process(pid).children(recursive=True)
        return found

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self._http is not None:
            await self._http.aclose()
        children = self.children() or self._children
        # The dispatcher first, so its in-flight publishes settle, then the API.
        for process in (self.dispatcher, self.proc):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10)
        for child in children:  # processes this service started, by pid
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        log(f"service '{self.name}' stopped")
        self.proc = self.dispatcher = None

    def log_count(self, text: str) -> int:
        """Lines of this service's log that contain `text`."""
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if text in line)

    async def publishing(self) -> bool:
        response = await self.http.get("/health")
        return bool(response.json().get("publishing"))

    async def call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        if response.status_code != expect:
            raise BenchError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    async def timed(self, method: str, path: str, expect: int = 200) -> tuple[float, Any]:
        started = time.perf_counter()
        body = await self.call(method, path, expect)
        return (time.perf_counter() - started) * 1000, body

    async def clear(self) -> None:
        """A clean slate for a section: publishing stopped, every job, page and page file
        deleted, the pages queue empty."""
        await self.stop_publishing()
        await self.ctx.truncate()
        await self.ctx.purge(self.ctx.pages_queue)

    async def stop_publishing(self, timeout: float = 60.0) -> None:
        await self.call("POST", "/admin/stop", 202)

        async def idle() -> bool:
            return not await self.publishing()

        await wait_until(idle, timeout=timeout, interval=0.1, what="publishing to stop")


def service_roles(svc: Service) -> dict[int, str]:
    roles = {
        svc.pid: "API process (event loop and its threads)",
        svc.dispatcher_pid: "dispatcher process",
    }
    for child in svc.children():
        with contextlib.suppress(psutil.Error):
            cmd = child.cmdline()
            kind = "resource tracker" if "resource_tracker" in " ".join(cmd) else "pool worker"
            roles[child.pid] = f"{kind} {child.pid}"
    return roles


class OcrWorkerProcess:
    """`ocr-gateway worker` beside a service: the reference worker, configured by environment
    like one on another machine (the service's broker, database and queues), logging to a file.
    """

    def __init__(self, ctx: Context, name: str, processes: int) -> None:
        self.ctx = ctx
        self.name = name
        self.processes = processes
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.ctx.out / f"worker-{self.name}.log"

    async def start(self, overrides: dict[str, str] | None = None) -> None:
        env = self.ctx.service_env(
            {
                "OCR_GATEWAY_OCR_ENGINE": "rapidocr",
                "OCR_GATEWAY_OCR_PROCESSES": str(self.processes),
                **(overrides or {}),
            }
        )
        env.setdefault("ORT_DISABLE_TELEMETRY", "1")
        process = self.proc = self._spawn(env)
        started = time.perf_counter()

        async def consuming() -> bool:
            if process.poll() is not None:
                raise BenchError(
                    f"ocr-gateway worker exited with {process.returncode}; see {self.log_path}"
                )
            return bool(await asyncio.to_thread(self.log_count, "worker consuming"))

        await wait_until(
            consuming, timeout=SERVICE_START_TIMEOUT_S, interval=0.1, what="the OCR worker"
        )
        log(
            f"OCR worker '{self.name}' ({self.processes} OCR processes, pid {process.pid})"
            f" consuming after {time.perf_counter() - started:.1f} s"
        )

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as output:
            return subprocess.Popen(
                [str(self.ctx.bin / "ocr-gateway"), "worker"],
                env=env,
                cwd=self.ctx.out,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def log_count(self, text: str) -> int:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return sum(1 for line in handle if text in line)

    def ocr_seconds(self) -> list[float]:
        """The OCR time of each page it finished, from its `ocr finished ... seconds=` lines."""
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return [
                float(line.split("seconds=")[1].split()[0])
                for line in handle
                if "ocr finished" in line and "seconds=" in line
            ]

    async def stop(self) -> None:
        """SIGTERM, a grace for the page in flight, then SIGKILL; its OCR processes end with it
        (a parent-death signal), and any left are killed by pid."""
        process, self.proc = self.proc, None
        if process is None or process.poll() is not None:
            return
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        log(f"OCR worker '{self.name}' stopped")
