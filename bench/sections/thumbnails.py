"""12. Thumbnails: images per second through `POST /images` against a bare Pillow loop.

The service's way: every image uploaded to `POST /images` (4 clients at once, `dedup=false` so
that each run makes its thumbnails again), timed from the first upload until the last image is
DONE in the database. The bare way: the same images, in a pool of as many processes as the
service's render pool (at the same niceness, `ctx.pool`), each opened once and, for each of the
three boxes, `copy()` + Pillow's `thumbnail()` + WebP at the service's quality, written to disk.
The images: page renders of the GeoTopo sample (1654x2339 gray PNGs, the screenshots and scans
of a document gateway) and generated 3000x2000 photos (JPEG with noise), half each. Beside the
rates (12a), the gateway's thumbnail maker alone in a pool like its render pool, one image a
task as the service runs it, against the same bare loop (12e), and the CPU seconds both ways
spend (12b): the service's every process against the bare
pool's, a figure the machine's other load does not move.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import statistics
import time
import uuid
from pathlib import Path

import psutil
from PIL import Image
from tests.support.waiting import wait_until

from bench.harness.common import BenchError, log
from bench.harness.context import Context
from bench.harness.files import reset_dir
from bench.harness.plan import Plan, Row, fmt_list, rotate
from bench.harness.service import Service
from ocr_gateway.core.settings import Settings
from ocr_gateway.rendering.mupdf import pymupdf
from ocr_gateway.thumbnails.making import (
    IMAGE_BOXES,
    encode,
    make_page_thumbnail,
    make_thumbnails,
)

SECTION = 12
# Job page thumbnails: the pages whose costs decide between first request and render time.
PAGE_SAMPLE = 24
LAZY_SIZE = 300
CLIENTS = 4
PHOTO_SIZE = (3000, 2000)
QUALITY = int(Settings.model_fields["thumbnail_quality"].default)


def image_count(plan: Plan) -> int:
    return 8 if plan.quick else 48


def thumbnail_rows(plan: Plan) -> list[Row]:
    images = (
        f"{image_count(plan)} images (GeoTopo page PNGs 1654x2339 gray and 3000x2000 JPEG"
        " photos, half each), 3 boxes each, WebP"
    )
    return [
        Row(
            "12a",
            SECTION,
            "Thumbnails: service / bare Pillow loop",
            f"images/s, POST /images ({CLIENTS} clients) until every image is DONE, vs a bare"
            " pool of as many processes doing copy() + thumbnail() + save per box; " + images,
            "x",
            ">=",
            0.85,
        ),
        Row(
            "12e",
            SECTION,
            "Thumbnails: the gateway's maker in its pool / bare Pillow loop",
            "images/s, thumbnails/making.make_thumbnails run as the service runs it (one image a"
            " task in a pool like its render pool, the same processes as the bare loop), without"
            " the upload and its inspection; " + images,
            "x",
            ">=",
            0.85,
        ),
        Row(
            "12b",
            SECTION,
            "Thumbnails: CPU seconds per image, service / bare",
            "user+system CPU of every process of the service (API, inspect and render pools,"
            " dispatcher) over a run, against the bare pool's; what the machine's other load"
            " cannot move",
            "x",
        ),
        Row(
            "12c",
            SECTION,
            "Job page thumbnail at its first request / the page's render",
            f"CPU time in one process over {PAGE_SAMPLE} GeoTopo pages: one {LAZY_SIZE} px"
            " thumbnail made from the page's PNG (what a first request costs), against rendering"
            " the page to its PNG",
            "x",
        ),
        Row(
            "12d",
            SECTION,
            "Job page thumbnails made at render time / the page's render",
            f"the same {PAGE_SAMPLE} pages: the three sizes made from the rendered raster (what"
            " every page would cost at render time, looked at or not), against rendering it",
            "x",
        ),
    ]


def make_photo(path: Path, seed: int) -> None:
    """A photo-like JPEG: colour gradients with noise (noise keeps the JPEG realistic in size)."""
    noise = Image.effect_noise(PHOTO_SIZE, 40 + seed % 20)
    gradient = Image.linear_gradient("L").resize(PHOTO_SIZE)
    red = Image.blend(gradient, noise, 0.3)
    green = Image.blend(gradient.transpose(Image.Transpose.ROTATE_180), noise, 0.3)
    blue = Image.blend(noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.5)
    Image.merge("RGB", (red, green, blue)).save(path, "JPEG", quality=88)


def prepare_images(ctx: Context, count: int) -> list[Path]:
    folder = ctx.work / "thumbnail-images"
    reset_dir(folder)
    pages = ctx.renders[: count // 2] or ctx.renders[:1]
    images = []
    for index, page in enumerate(pages):
        target = folder / f"page-{index}.png"
        shutil.copyfile(page, target)
        images.append(target)
    for index in range(count - len(images)):
        target = folder / f"photo-{index}.jpg"
        make_photo(target, index)
        images.append(target)
    return images


def bare_thumbnails(paths: list[str], out_dir: str, quality: int) -> int:
    """The limit, run in a pool process: Pillow's `thumbnail()` into each box, WebP to disk."""
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            image.load()
            for name, box in IMAGE_BOXES.items():
                thumb = image.copy()
                thumb.thumbnail(box)
                buffer = io.BytesIO()
                thumb.save(buffer, "WEBP", quality=quality)
                with open(os.path.join(out_dir, f"{os.getpid()}-{index}-{name}.webp"), "wb") as f:
                    f.write(buffer.getvalue())
    return len(paths)


def page_costs(
    source: str, pages: list[int], out_dir: str, dpi: int, gray: bool, quality: int
) -> tuple[float, float, float]:
    """In a pool process, CPU seconds over `pages`: rendering each to its PNG (as the service
    renders), one thumbnail from that PNG (a first request), and the three sizes from the
    raster in memory (render time)."""
    render = lazy = eager = 0.0
    colorspace = pymupdf.csGRAY if gray else pymupdf.csRGB
    with pymupdf.open(source) as doc:
        for number in pages:
            started = time.process_time()
            pixmap = doc.load_page(number - 1).get_pixmap(
                dpi=dpi, colorspace=colorspace, alpha=False
            )
            png = os.path.join(out_dir, f"{number}.png")
            with open(png, "wb") as handle:
                handle.write(pixmap.tobytes("png"))
            render += time.process_time() - started

            started = time.process_time()
            made = make_page_thumbnail(png, f"{png}.thumb.webp", LAZY_SIZE, quality)
            lazy += time.process_time() - started
            if made.problem is not None:
                raise RuntimeError(made.problem)

            started = time.process_time()
            mode = "L" if pixmap.n == 1 else "RGB"
            raster = Image.frombytes(mode, (pixmap.width, pixmap.height), pixmap.samples)
            for box in IMAGE_BOXES.values():
                encode(raster, box, quality)
            eager += time.process_time() - started
    return render, lazy, eager


async def page_thumbnail_costs(ctx: Context, rows: dict[str, Row]) -> None:
    """12c and 12d: what decides that job page thumbnails are made at their first request."""
    pool = ctx.pool
    assert pool is not None
    total = await asyncio.to_thread(_page_total, ctx.geotopo)
    step = max(1, total // PAGE_SAMPLE)
    pages = list(range(1, total + 1, step))[:PAGE_SAMPLE]
    out_dir = ctx.work / "page-thumbnails"
    await asyncio.to_thread(reset_dir, out_dir)
    render, lazy, eager = await pool.run(
        page_costs, str(ctx.geotopo), pages, str(out_dir), ctx.dpi, ctx.gray, QUALITY, timeout=600
    )
    each = 1000 / len(pages)
    rows["12c"].values = [lazy / render]
    rows["12c"].detail = (
        f"{len(pages)} pages at {ctx.dpi} dpi: render {render * each:.0f} ms a page, one"
        f" {LAZY_SIZE} px thumbnail from its PNG {lazy * each:.0f} ms"
    )
    rows["12d"].values = [eager / render]
    rows["12d"].detail = (
        f"the three sizes from the raster {eager * each:.0f} ms a page, against the render's"
        f" {render * each:.0f} ms"
    )
    log(
        f"page thumbnails: render {render * each:.0f} ms, first request {lazy * each:.0f} ms,"
        f" at render time {eager * each:.0f} ms a page"
    )


def _page_total(path: Path) -> int:
    with pymupdf.open(path) as doc:
        return int(doc.page_count)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes so far (a process gone counts nothing)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def service_pids(svc: Service) -> list[int]:
    return sorted(svc.pids | {child.pid for child in svc.children()})


async def bare_rate(ctx: Context, images: list[Path], out_dir: Path) -> tuple[float, float]:
    """Images/s of the bare loop, and its CPU seconds."""
    pool = ctx.pool
    assert pool is not None
    await asyncio.to_thread(reset_dir, out_dir)
    pids = pool.worker_pids()
    cpu_before = cpu_seconds(pids)
    # Two images a task: the pool stays busy to the end, as the service's does.
    chunks = [[str(p) for p in images[i : i + 2]] for i in range(0, len(images), 2)]
    started = time.perf_counter()
    done = await asyncio.gather(
        *(pool.run(bare_thumbnails, chunk, str(out_dir), QUALITY, timeout=600) for chunk in chunks)
    )
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pids) - cpu_before
    if sum(done) != len(images):
        raise BenchError(f"the bare loop made thumbnails of {sum(done)} of {len(images)} images")
    return len(images) / elapsed, cpu


async def maker_rate(ctx: Context, images: list[Path], out_dir: Path) -> float:
    """Images/s of the gateway's thumbnail maker alone, one image a task as the service runs it."""
    pool = ctx.pool
    assert pool is not None
    await asyncio.to_thread(reset_dir, out_dir)
    folders = [out_dir / str(index) for index in range(len(images))]
    for folder in folders:
        await asyncio.to_thread(folder.mkdir)
    budget = int(Settings.model_fields["max_page_pixels"].default)
    started = time.perf_counter()
    made = await asyncio.gather(
        *(
            pool.run(
                make_thumbnails,
                str(path),
                str(folder),
                IMAGE_BOXES,
                QUALITY,
                budget,
                timeout=600,
            )
            for path, folder in zip(images, folders, strict=True)
        )
    )
    elapsed = time.perf_counter() - started
    problems = [m.problem for m in made if m.problem is not None]
    if problems:
        raise BenchError(f"the maker failed: {problems[0]}")
    return len(images) / elapsed


async def service_rate(
    ctx: Context, svc: Service, images: list[tuple[str, bytes]]
) -> tuple[float, float]:
    """Images/s through POST /images until every image is DONE, and the service's CPU seconds."""
    pids = service_pids(svc)
    cpu_before = cpu_seconds(pids)
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in images:
        queue.put_nowait(item)
    ids: list[uuid.UUID] = []

    async def client() -> None:
        while not queue.empty():
            name, data = queue.get_nowait()
            body = await svc.call(
                "POST", "/images", 202, files={"file": (name, data)}, params={"dedup": "false"}
            )
            ids.append(uuid.UUID(body["id"]))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))

    async def all_done() -> bool:
        row = await ctx.conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'DONE') AS done,"
            " count(*) FILTER (WHERE status = 'FAILED') AS failed"
            " FROM images WHERE image_id = ANY($1::uuid[])",
            ids,
        )
        if row["failed"]:
            raise BenchError(f"{row['failed']} images FAILED; see {svc.log_path}")
        return bool(row["done"] == len(images))

    finished = await wait_until(all_done, timeout=600, interval=0.02, what="thumbnails DONE")
    rate = len(images) / (finished - started)
    cpu = cpu_seconds(pids) - cpu_before
    # Checked outside the timed part: every thumbnail is on disk; then the images go.
    for image_id in ids:
        folder = ctx.files_dir / "images" / str(image_id)
        files = await asyncio.to_thread(_names, folder)
        if len(files) != len(IMAGE_BOXES) + 1:
            raise BenchError(f"image {image_id} has {files}")
        await svc.call("DELETE", f"/images/{image_id}")
    return rate, cpu


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _pixels(path: Path) -> int:
    with Image.open(path) as image:
        return image.width * image.height


async def run(ctx: Context, rows: dict[str, Row]) -> None:
    plan = ctx.plan
    paths = await asyncio.to_thread(prepare_images, ctx, image_count(plan))
    images = [(p.name, await asyncio.to_thread(p.read_bytes)) for p in paths]
    await page_thumbnail_costs(ctx, rows)
    megapixels = statistics.mean([await asyncio.to_thread(_pixels, p) for p in paths]) / 1e6
    log(f"thumbnails: {len(paths)} images, {megapixels:.1f} Mpx on average")
    # Five runs in the full plan: a run takes seconds, and the machine's other work moves each.
    runs = plan.runs if plan.quick else max(plan.runs, 5)
    svc = Service(ctx, "thumbnails", {})
    await svc.start()
    service_rates: list[float] = []
    bare_rates: list[float] = []
    service_cpu: list[float] = []
    bare_cpu: list[float] = []
    maker_rates: list[float] = []
    maker_bare: list[float] = []
    try:
        # A warm-up upload, so that no run pays for the first import of WebP in a process.
        await service_rate(ctx, svc, images[:2])
        for run_index in range(runs):
            for kind in rotate(["service", "bare", "maker"], run_index):
                if kind == "service":
                    rate, cpu = await service_rate(ctx, svc, images)
                    service_rates.append(rate)
                    service_cpu.append(cpu)
                elif kind == "bare":
                    rate, cpu = await bare_rate(ctx, paths, ctx.work / "bare-thumbnails")
                    bare_rates.append(rate)
                    bare_cpu.append(cpu)
                else:
                    maker_rates.append(await maker_rate(ctx, paths, ctx.work / "maker"))
            # The maker is compared with the bare run next to it in the same rotation.
            maker_bare.append(bare_rates[-1])
            log(
                f"thumbnails run {run_index + 1}/{runs}: service {service_rates[-1]:.2f},"
                f" bare {bare_rates[-1]:.2f} images/s"
            )
    finally:
        await svc.stop()
    rows["12a"].values = [s / b for s, b in zip(service_rates, bare_rates, strict=True)]
    service, bare = fmt_list(service_rates, 2), fmt_list(bare_rates, 2)
    rows["12a"].detail = f"service {service} images/s; bare {bare} images/s"
    rows["12e"].values = [m / b for m, b in zip(maker_rates, maker_bare, strict=True)]
    maker, beside = fmt_list(maker_rates, 2), fmt_list(maker_bare, 2)
    rows["12e"].detail = f"maker {maker} images/s; bare {beside} images/s"
    rows["12b"].values = [s / b for s, b in zip(service_cpu, bare_cpu, strict=True)]
    count = len(images)
    rows["12b"].detail = (
        f"service {fmt_list([c / count * 1000 for c in service_cpu], 0)} ms of CPU an image;"
        f" bare {fmt_list([c / count * 1000 for c in bare_cpu], 0)} ms"
    )
