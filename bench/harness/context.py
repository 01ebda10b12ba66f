"""The run's context: names, directories, connections and the bare render pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection

from bench.harness import bare
from bench.harness.common import AMQP_URL, BENCH, GEOTOPO, PG_ROOT, REPO, BenchError, log
from bench.harness.files import (
    clear_dir,
    link_pages,
    make_generated_pdf,
    make_subset_pdf,
    page_count,
    reset_dir,
)
from bench.harness.plan import Plan
from ocr_gateway.core.process_pool import ProcessPool, lower_priority
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.messaging.amqp import (
    dead_letter_queue,
    declare_pages_queue,
    declare_queue,
    queue_depth,
)
from ocr_gateway.rendering.mupdf import warm_up


class Context:
    """Names, directories, connections and the bare render pool of one bench run."""

    def __init__(self, plan: Plan, keep: bool) -> None:
        self.plan = plan
        self.keep = keep
        self.run_id = uuid.uuid4().hex[:8]
        self.out = BENCH / "out" / self.run_id
        self.files_dir = self.out / "files"
        self.temp_dir = self.out / "temp"
        self.logs_dir = self.out / "logs"
        self.renders_dir = self.out / "renders"
        self.work = self.out / "work"
        self.bin = Path(sys.executable).parent
        if not (self.bin / "ocr-gateway").exists():
            self.bin = REPO / ".venv" / "bin"
        self.db_name = f"ocr_gateway_bench_{self.run_id}"
        self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.db_name}"
        self.dsn = f"{PG_ROOT}/{self.db_name}"
        self.pages_queue = f"ocr.pages.bench-{self.run_id}"
        self.results_queue = f"ocr.results.bench-{self.run_id}"
        self.limit_queue = f"ocr.pages.bench-{self.run_id}-limit"
        fields = Settings.model_fields
        # The service's own defaults, passed to it explicitly so the bare loop matches them.
        self.dpi = int(fields["render_dpi"].default)
        self.gray = bool(fields["render_grayscale"].default)
        self.chunk = int(fields["render_chunk_pages"].default)
        self.default_high_water = int(fields["queue_high_water"].default)
        self.workers = max(1, os.cpu_count() or 1)
        niceness = fields.get("render_niceness")
        self.niceness = int(niceness.default) if niceness is not None else 0
        self.settings = Settings(database_url=self.database_url, _env_file=None)
        self.pdftoppm = shutil.which("pdftoppm")
        self.db: asyncpg.Connection | None = None
        self.amqp: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self.pool: ProcessPool | None = None
        self.geotopo = GEOTOPO
        self.generated = self.work / "generated.pdf"
        self.renders: list[Path] = []
        self.db_created = False

    # ------------------------------------------------------------ set-up and clean-up

    async def setup(self) -> None:
        if not GEOTOPO.exists():
            raise BenchError(f"{GEOTOPO} is missing from tests/data")
        for folder in (self.files_dir, self.temp_dir, self.logs_dir, self.renders_dir, self.work):
            await asyncio.to_thread(reset_dir, folder)
        log(f"run {self.run_id}: database {self.db_name}, queues {self.pages_queue}, {self.out}")
        self.db_created = await ensure_database(self.settings)
        await asyncio.to_thread(upgrade, self.settings)
        self.db = await asyncpg.connect(self.dsn, timeout=10)
        self.amqp = await aio_pika.connect(AMQP_URL, timeout=10)
        self.channel = await self.amqp.channel(publisher_confirms=True, on_return_raises=True)
        # Declared as the service declares them: the pages queue (and the bare loops' copy of
        # it) with its priority, else the service would find it without and publish without.
        await declare_pages_queue(self.channel, self.pages_queue)
        await declare_queue(self.channel, self.results_queue)
        await declare_pages_queue(self.channel, self.limit_queue)

        if self.plan.geotopo_pages is not None:
            self.geotopo = self.work / f"GeoTopo-first{self.plan.geotopo_pages}.pdf"
            await asyncio.to_thread(make_subset_pdf, GEOTOPO, self.geotopo, self.plan.geotopo_pages)
        started = time.perf_counter()
        await asyncio.to_thread(make_generated_pdf, self.generated, self.plan.generated_pages)
        log(
            f"generated a {self.plan.generated_pages}-page PDF in "
            f"{time.perf_counter() - started:.1f} s"
        )

        # The service's own pool class, built like its render pool: spawn, nice, warmed up.
        self.pool = ProcessPool(
            "bench render", self.workers, initializer=lower_priority, initargs=(self.niceness,)
        )
        await self.pool.start(warm_up)
        log(f"bare render pool: {len(self.pool.worker_pids())} processes")
        # The sample's pages, rendered once: the realistic PNGs every publish test sends.
        pages = await asyncio.to_thread(page_count, self.geotopo)
        await self.bare_render(self.geotopo, pages, self.renders_dir, token="seed")
        self.renders = sorted(self.renders_dir.glob("*.png"), key=lambda p: int(p.stem))
        sizes = [p.stat().st_size for p in self.renders]
        log(f"sample renders: {len(sizes)} PNGs, mean {statistics.mean(sizes) / 1024:.0f} KiB")

    async def cleanup(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        if self.channel is not None:
            with contextlib.suppress(Exception):
                for name in (self.pages_queue, self.results_queue, self.limit_queue):
                    for queue in (name, dead_letter_queue(name)):
                        await self.channel.queue_delete(queue)
        if self.amqp is not None:
            with contextlib.suppress(Exception):
                await self.amqp.close()
        if self.db is not None:
            with contextlib.suppress(Exception):
                await self.db.close()
        with contextlib.suppress(Exception):
            await drop_database(self.settings)
        if not self.keep:
            await asyncio.to_thread(shutil.rmtree, self.out, True)
        log(
            "cleaned up: database dropped, queues deleted"
            + ("" if self.keep else ", files removed")
        )

    def service_env(self, overrides: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCR_GATEWAY_")}
        env.update(
            {
                "OCR_GATEWAY_DATABASE_URL": self.database_url,
                "OCR_GATEWAY_RABBITMQ_URL": AMQP_URL,
                "OCR_GATEWAY_PAGES_QUEUE": self.pages_queue,
                "OCR_GATEWAY_RESULTS_QUEUE": self.results_queue,
                "OCR_GATEWAY_FILES_DIR": str(self.files_dir),
                "OCR_GATEWAY_TEMP_DIR": str(self.temp_dir),
                "OCR_GATEWAY_LOGS_DIR": str(self.logs_dir),
                "OCR_GATEWAY_MAX_PAGES": str(max(5000, 2 * self.plan.generated_pages)),
                "OCR_GATEWAY_RENDER_DPI": str(self.dpi),
                "OCR_GATEWAY_RENDER_GRAYSCALE": "true" if self.gray else "false",
                "OCR_GATEWAY_RENDER_WORKERS": str(self.workers),
            }
        )
        if "run_workers" in Settings.model_fields:  # no OCR worker may drain the pages queue
            env["OCR_GATEWAY_RUN_WORKERS"] = "0"
        if "render_niceness" in Settings.model_fields:
            env["OCR_GATEWAY_RENDER_NICENESS"] = str(self.niceness)
        env.update(overrides)
        return env

    @property
    def conn(self) -> asyncpg.Connection:
        assert self.db is not None
        return self.db

    @property
    def ch(self) -> AbstractChannel:
        assert self.channel is not None
        return self.channel

    # ------------------------------------------------------------ database

    async def truncate(self) -> None:
        await self.conn.execute("TRUNCATE jobs, pages, dispatch_requests CASCADE")
        await asyncio.to_thread(clear_dir, self.files_dir)

    async def count_pages(self, status: str) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM pages WHERE status = $1", status))

    async def seed_realistic(self, pages: int) -> list[uuid.UUID]:
        """Rendered jobs of one sample's pages each, PNGs hard-linked to the sample renders."""
        per_job = len(self.renders)
        jobs = [(uuid.uuid4(), min(per_job, pages - start)) for start in range(0, pages, per_job)]
        records = await asyncio.to_thread(link_pages, self.files_dir, self.renders, jobs)
        await self.conn.executemany(
            "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number,"
            " rendered_pages, render_attempts)"
            " VALUES ($1, 'seeded.pdf', 'application/pdf', 'pending', $2, $2, 1)",
            jobs,
        )
        await self.conn.copy_records_to_table(
            "pages", records=records, columns=["job_id", "page_number", "path", "status"]
        )
        await self.conn.execute("ANALYZE jobs; ANALYZE pages")
        return [job_id for job_id, _ in jobs]

    async def reset_pages(self) -> None:
        """Every page back to pending and the queue empty, so a start publishes them all again."""
        await self.conn.execute(
            "UPDATE pages SET status = 'pending', lease_until = NULL, publish_attempts = 0"
            " WHERE status <> 'pending'"
        )
        await self.conn.execute("UPDATE jobs SET status = 'pending' WHERE status <> 'pending'")
        await self.purge(self.pages_queue)

    # ------------------------------------------------------------ broker

    async def depth(self, queue: str) -> int:
        return await queue_depth(self.ch, queue)

    async def purge(self, queue: str) -> None:
        declared = await self.ch.declare_queue(queue, passive=True)
        await declared.purge()

    # ------------------------------------------------------------ bare rendering

    async def bare_render(self, source: Path, pages: int, out_dir: Path, *, token: str) -> float:
        """Render every page with the bare loop; return pages/s (pool already warm)."""
        pool = self.pool
        assert pool is not None
        chunks = [
            list(range(first, min(first + self.chunk, pages + 1)))
            for first in range(1, pages + 1, self.chunk)
        ]
        started = time.perf_counter()
        done = await asyncio.gather(
            *(
                pool.run(
                    bare.render_chunk,
                    str(source),
                    token,
                    chunk,
                    str(out_dir),
                    self.dpi,
                    self.gray,
                    timeout=600,
                )
                for chunk in chunks
            )
        )
        elapsed = time.perf_counter() - started
        if sum(done) != pages:
            raise BenchError(f"bare loop rendered {sum(done)} of {pages} pages")
        return pages / elapsed
