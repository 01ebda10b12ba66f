"""3. Upload latency, alone and while a long job renders."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import psutil
from tests.support.waiting import wait_until

from bench.harness.common import MB, log
from bench.harness.context import Context
from bench.harness.plan import Row, percentile
from bench.harness.profiles import Profiler
from bench.harness.service import Service, service_roles


async def timed_upload(svc: Service, name: str, data: bytes) -> tuple[float, uuid.UUID]:
    started = time.perf_counter()
    body = await svc.call(
        "POST", "/ocrpdf?dedup=false", 202, files={"file": (name, data, "application/pdf")}
    )
    return (time.perf_counter() - started) * 1000, uuid.UUID(body["job_id"])


@dataclass(slots=True)
class UploadRound:
    latencies: list[float]
    still_rendering: bool
    per_second: float
    api_cpu_ms: float  # API process CPU per upload (with its DELETE)
    bench_cpu_ms: float  # this bench's client CPU per upload


async def loaded_uploads(
    ctx: Context, svc: Service, data: bytes, clients: int, per_client: int
) -> UploadRound:
    """Uploads from concurrent clients while the generated PDF renders; each job is deleted."""
    generated = await asyncio.to_thread(ctx.generated.read_bytes)
    body = await svc.call(
        "POST",
        "/ocrpdf?dedup=false",
        202,
        files={"file": ("background.pdf", generated, "application/pdf")},
    )
    background = uuid.UUID(body["job_id"])

    async def rendering() -> bool:
        done = await ctx.conn.fetchval(
            "SELECT rendered_pages FROM jobs WHERE job_id = $1", background
        )
        return bool(done)

    await wait_until(rendering, timeout=60, interval=0.05, what="background render")
    latencies: list[float] = []

    async def client() -> None:
        for _ in range(per_client):
            latency, job_id = await timed_upload(svc, ctx.geotopo.name, data)
            latencies.append(latency)
            await svc.call("DELETE", f"/admin/delete/job/{job_id}")

    api, bench = psutil.Process(svc.pid), psutil.Process()
    api_before, bench_before = sum(api.cpu_times()[:2]), sum(bench.cpu_times()[:2])
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    api_cpu, bench_cpu = (
        sum(api.cpu_times()[:2]) - api_before,
        sum(bench.cpu_times()[:2]) - bench_before,
    )
    row = await ctx.conn.fetchrow(
        "SELECT rendered_pages, total_page_number FROM jobs WHERE job_id = $1", background
    )
    still_rendering = bool(row and row["rendered_pages"] < row["total_page_number"])
    await svc.call("DELETE", f"/admin/delete/job/{background}")
    await asyncio.sleep(1.0)  # the chunk a pool worker is on finishes and is dropped
    count = len(latencies)
    return UploadRound(
        latencies, still_rendering, count / wall, 1000 * api_cpu / count, 1000 * bench_cpu / count
    )


async def run(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    await svc.clear()
    data = await asyncio.to_thread(ctx.geotopo.read_bytes)
    idle: list[float] = []
    for _ in range(plan.idle_uploads):
        latency, job_id = await timed_upload(svc, ctx.geotopo.name, data)
        idle.append(latency)
        await svc.call("DELETE", f"/admin/delete/job/{job_id}")
        await asyncio.sleep(1.0)  # nothing renders during the next idle upload
    single = await loaded_uploads(ctx, svc, data, 1, plan.idle_uploads)
    loaded = await loaded_uploads(ctx, svc, data, plan.upload_clients, plan.uploads_per_client)
    p50, p99 = percentile(loaded.latencies, 50), percentile(loaded.latencies, 99)
    idle_p50, single_p50 = percentile(idle, 50), percentile(single.latencies, 50)
    log(
        f"upload: idle p50 {idle_p50:.1f} ms, 1 client while rendering p50 {single_p50:.1f} ms;"
        f" {plan.upload_clients} clients p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )
    rows["3a"].values = [p50]
    rows["3b"].values = [p99]
    rows["3c"].values = [single_p50 / idle_p50]
    background = "still rendering at the end" if loaded.still_rendering else "had finished"
    rows["3b"].detail = (
        f"{len(loaded.latencies)} uploads ({plan.upload_clients} clients x"
        f" {plan.uploads_per_client}), {len(data) / MB:.1f} MiB each, max"
        f" {max(loaded.latencies):.1f} ms; the background job ({plan.generated_pages} pages)"
        f" {background}. Throughput {loaded.per_second:.1f} uploads/s (each followed by its"
        f" DELETE), so with {plan.upload_clients} clients always in flight a request waits about"
        f" {plan.upload_clients}/{loaded.per_second:.0f} s = "
        f"{1000 * plan.upload_clients / loaded.per_second:.0f} ms; CPU per upload: API process"
        f" {loaded.api_cpu_ms:.1f} ms, this bench's client {loaded.bench_cpu_ms:.1f} ms"
    )
    rows["3c"].detail = (
        f"idle: {len(idle)} uploads one by one, p50 {idle_p50:.1f} ms; one client while the"
        f" {plan.generated_pages}-page job renders: {len(single.latencies)} uploads, p50"
        f" {single_p50:.1f} ms, max {max(single.latencies):.1f} ms"
    )
    if prof.wanted(rows["3b"].met is False or rows["3c"].met is False):

        async def one_round() -> None:
            await loaded_uploads(
                ctx, svc, data, plan.upload_clients, max(1, plan.uploads_per_client // 2)
            )

        await prof.record(
            "uploads under load",
            svc.pid,
            one_round,
            subprocesses=True,
            roles=service_roles(svc),
        )
