"""1. Render throughput: the service against a bare PyMuPDF loop and pdftoppm."""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.waiting import wait_until

from bench.harness.common import BenchError, log
from bench.harness.context import Context
from bench.harness.files import count_files, page_count, reset_dir
from bench.harness.plan import Row, fmt_list, rotate
from bench.harness.profiles import Profiler
from bench.harness.service import Service, service_roles


async def service_render(ctx: Context, svc: Service, name: str, data: bytes, pages: int) -> float:
    """Upload, then wait for the job's rendered_pages to reach its total; return pages/s."""
    started = time.perf_counter()
    body = await svc.call(
        "POST", "/ocrpdf?dedup=false", 202, files={"file": (name, data, "application/pdf")}
    )
    job_id = uuid.UUID(body["job_id"])
    if body["total_page_number"] != pages:
        raise BenchError(f"the service counted {body['total_page_number']} pages, not {pages}")

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
    # Checked through the API and on disk, outside the timed part.
    job = await svc.call("GET", f"/admin/job/{job_id}")
    files = await asyncio.to_thread(count_files, ctx.files_dir / str(job_id), "*.png")
    if job["rendered_pages"] != pages or len(job["pages"]) != pages or files != pages:
        raise BenchError(f"{name}: {job['rendered_pages']} rendered, {files} PNG files")
    await svc.call("DELETE", f"/admin/delete/job/{job_id}")
    return pages / (done - started)


def peer_blocks(pages: int, sample: int) -> list[tuple[int, int]]:
    """Blocks of up to 8 consecutive pages spread evenly over the document."""
    sample = max(1, min(sample, pages))
    blocks = math.ceil(sample / 8)
    size = math.ceil(sample / blocks)
    stride = pages / blocks
    result = []
    for index in range(blocks):
        first = 1 + int(index * stride)
        result.append((first, min(pages, first + size - 1)))
    return result


async def pdftoppm_render(
    ctx: Context, source: Path, blocks: list[tuple[int, int]], out_dir: Path
) -> float:
    assert ctx.pdftoppm is not None
    await asyncio.to_thread(reset_dir, out_dir)
    pages = sum(last - first + 1 for first, last in blocks)
    gray = ["-gray"] if ctx.gray else []
    started = time.perf_counter()
    for first, last in blocks:
        proc = await asyncio.create_subprocess_exec(
            ctx.pdftoppm,
            "-png",
            *gray,
            "-r",
            str(ctx.dpi),
            "-f",
            str(first),
            "-l",
            str(last),
            str(source),
            str(out_dir / "p"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 600)
        if proc.returncode != 0:
            raise BenchError(f"pdftoppm failed: {err.decode(errors='replace')[-300:]}")
    elapsed = time.perf_counter() - started
    written = await asyncio.to_thread(count_files, out_dir, "*.png")
    if written != pages:
        raise BenchError(f"pdftoppm wrote {written} of {pages} pages")
    return pages / elapsed


async def run(ctx: Context, svc: Service, rows: dict[str, Row], prof: Profiler) -> None:
    plan = ctx.plan
    docs = [
        ("GeoTopo", ctx.geotopo, "1a", "1b"),
        ("generated", ctx.generated, "1c", "1d"),
    ]
    measured: list[tuple[str, Path, bytes, int, bool]] = []
    for name, path, bare_key, peer_key in docs:
        data = await asyncio.to_thread(path.read_bytes)
        pages = await asyncio.to_thread(page_count, path)
        blocks = peer_blocks(pages, plan.peer_pages)
        service_rates: list[float] = []
        bare_rates: list[float] = []
        peer_rates: list[float] = []
        for run in range(plan.runs):
            for kind in rotate(["service", "bare", "peer"], run):
                if kind == "service":
                    service_rates.append(await service_render(ctx, svc, path.name, data, pages))
                elif kind == "bare":
                    out = ctx.work / f"bare-{name}"
                    await asyncio.to_thread(reset_dir, out)
                    bare_rates.append(
                        await ctx.bare_render(path, pages, out, token=f"{name}-{run}")
                    )
                    await asyncio.to_thread(shutil.rmtree, out, True)
                elif ctx.pdftoppm is not None:
                    peer_rates.append(
                        await pdftoppm_render(ctx, path, blocks, ctx.work / f"peer-{name}")
                    )
            log(
                f"render {name} run {run + 1}/{plan.runs}: service {service_rates[-1]:.1f},"
                f" bare {bare_rates[-1]:.1f}"
                + (f", pdftoppm {peer_rates[-1]:.2f}" if peer_rates else "")
                + " pages/s"
            )
        rows[bare_key].values = [s / b for s, b in zip(service_rates, bare_rates, strict=True)]
        rows[bare_key].detail = (
            f"{pages} pages; service {fmt_list(service_rates)} pages/s;"
            f" bare {fmt_list(bare_rates)} pages/s"
        )
        if peer_rates:
            rows[peer_key].values = [s / p for s, p in zip(service_rates, peer_rates, strict=True)]
            covered = ", ".join(f"{a}-{b}" for a, b in blocks)
            rows[peer_key].detail = (
                f"pdftoppm {fmt_list(peer_rates, 2)} pages/s on pages {covered}"
                f" (a sample, to bound the time); service {fmt_list(service_rates)} pages/s"
            )
        else:
            rows[peer_key].status = "skipped: pdftoppm not installed (poppler-utils)"

        measured.append((name, path, data, pages, rows[bare_key].met is False))

    # One profile pair is enough to see where the service's time goes: the first document
    # that missed its target (GeoTopo first: it is the shorter run).
    missed = [m for m in measured if m[4]]
    if prof.wanted(bool(missed)) and (missed or measured):
        name, path, data, pages, _ = (missed or measured)[0]

        async def one_service_render() -> None:
            await service_render(ctx, svc, path.name, data, pages)

        await prof.record(
            f"render {name} through the service",
            svc.pid,
            one_service_render,
            subprocesses=True,
            roles=service_roles(svc),
        )
        bare_out = ctx.work / f"bare-{name}-profiled"
        await asyncio.to_thread(reset_dir, bare_out)

        async def one_bare_render() -> None:
            await ctx.bare_render(path, pages, bare_out, token="profiled")

        await prof.record(
            f"render {name} with the bare loop",
            os.getpid(),
            one_bare_render,
            subprocesses=True,
            roles={os.getpid(): "bench process"},
        )
