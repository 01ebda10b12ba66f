"""18. Recognise versus full OCR: one page's recognition of N given boxes, against full OCR.

What `run-ocr` of a detect-first job (`/v1/ocr/jobs`, docs/detect.md) costs a worker, against
what an ordinary page costs: the worker's own pool functions in one OCR process (RapidOCR),
on text pages of the GeoTopo sample rendered as the gateway renders them (200 DPI, gray).
Each page is first detected alone (`detect`, timed: 18d); its boxes are then recognised alone
(`recognize` with all N of them, and with every fourth), taking turns with full OCR of the
same page, so a load from elsewhere on the machine weighs on each alike.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from tests.support.documents import sample

from bench.harness.common import log
from bench.harness.plan import Plan, Row
from ocr_gateway.core.process_pool import ProcessPool
from ocr_gateway.worker.process import engine_name, ocr_pool, recognize_page
from ocr_gateway.worker.regions import region_task_page

SECTION = 18
DPI = 200
CALL_TIMEOUT_S = 600.0
# Text pages of the GeoTopo sample (0-based), each with some 25-60 lines.
PAGES = (3, 18, 27)


def page_count(plan: Plan) -> int:
    """The quick run (CI's bench smoke test) reads one page, once."""
    return 1 if plan.quick else len(PAGES)


def runs(plan: Plan) -> int:
    return 1 if plan.quick else 3


def region_rows(plan: Plan) -> list[Row]:
    pages = f"{page_count(plan)} GeoTopo text pages, 200 DPI gray; one RapidOCR process"
    return [
        Row(
            "18a",
            SECTION,
            "Recognise all N given boxes / full OCR: time",
            f"seconds per page, recognize with the page's N detected boxes vs full OCR; {pages}",
            "x",
            "<",
            1.0,
        ),
        Row(
            "18b",
            SECTION,
            "Recognise N/4 given boxes / full OCR: time",
            f"seconds per page, recognize with every fourth detected box vs full OCR; {pages}",
            "x",
            "<",
            0.5,
        ),
        Row("18c", SECTION, "Full OCR: s/page", f"recognize_page in the OCR pool; {pages}", "s"),
        Row("18d", SECTION, "Detect alone: s/page", f"the detect task; {pages}", "s"),
    ]


def render_pages(count: int) -> list[str]:
    """The pages as the gateway sends them: gray 200 DPI PNGs, base64."""
    import pymupdf

    with pymupdf.open(sample("GeoTopo-komprimiert.pdf")) as document:
        return [
            base64.b64encode(
                document[number].get_pixmap(dpi=DPI, colorspace=pymupdf.csGRAY).tobytes("png")
            ).decode("ascii")
            for number in PAGES[:count]
        ]


async def timed(pool: ProcessPool, fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    output = await pool.run(fn, *args, timeout=CALL_TIMEOUT_S)
    return time.perf_counter() - started, output


async def run(rows: dict[str, Row], plan: Plan) -> None:
    images = render_pages(page_count(plan))
    ocr = ocr_pool("rapidocr", 1)
    try:
        await ocr.start(engine_name, CALL_TIMEOUT_S)
        if not plan.quick:  # a warm-up call (the engine also warms itself up when built)
            await ocr.run(recognize_page, images[0], timeout=CALL_TIMEOUT_S)
        boxes: list[list[dict[str, Any]]] = []
        detect_s = 0.0
        for image in images:
            seconds, found = await timed(ocr, region_task_page, "detect", image)
            detect_s += seconds
            boxes.append([{"id": b["id"], "points": b["points"]} for b in found.boxes])
        counts = [len(page) for page in boxes]
        for number in range(runs(plan)):
            full = every = quarter = 0.0
            for image, page in zip(images, boxes, strict=True):
                full += (await timed(ocr, recognize_page, image))[0]
                every += (await timed(ocr, region_task_page, "recognize", image, page))[0]
                fourth = page[::4]
                quarter += (await timed(ocr, region_task_page, "recognize", image, fourth))[0]
            rows["18a"].values.append(every / full)
            rows["18b"].values.append(quarter / full)
            rows["18c"].values.append(full / len(images))
            rows["18d"].values.append(detect_s / len(images))
            rows[
                "18a"
            ].detail = f"N = {', '.join(map(str, counts))} boxes; {every / len(images):.2f} s/page"
            rows["18b"].detail = f"{quarter / len(images):.2f} s/page"
            log(
                f"regions run {number + 1}: full OCR {full / len(images):.2f} s/page, recognise"
                f" N boxes {every / len(images):.2f} s, N/4 {quarter / len(images):.2f} s,"
                f" detect alone {detect_s / len(images):.2f} s (N = {counts})"
            )
    finally:
        ocr.shutdown()
