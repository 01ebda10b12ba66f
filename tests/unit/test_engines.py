"""Every selectable OCR engine reads a real sample page, within a CER bound; a page received on
its side or upside down is read upright, its boxes in the pixels of the PNG received.

The page is the top of pdflatex-4-pages.pdf page 1 (its first 11 lines), rendered at 200 DPI
gray as the gateway renders: RapidOCR takes seconds per full page on one core, and these tests
must stay short. Ground truth is the PDF's own text layer in the same clip.
"""

from __future__ import annotations

import io
import unicodedata

import pymupdf
import pytest
from PIL import Image
from rapidfuzz.distance import Levenshtein

from ocr_gateway.worker.engine import ENGINES, available_engines, build_engine
from ocr_gateway.worker.layout import OcrOutput
from ocr_gateway.worker.regions import RegionEngine, run_region_task
from ocr_gateway.worker.tesseract import UPRIGHT, unturn_bbox
from tests.support.documents import sample

DPI = 200
CLIP = pymupdf.Rect(0, 0, 612, 260)  # PDF points: the page's title block and first paragraph
# Measured on this clip: rapidocr 0.44%, rapidocr3 0.26%, tesseract and tesserocr 0.18%.
MAX_CER = {"rapidocr": 0.02, "rapidocr3": 0.02, "tesseract": 0.01, "tesserocr": 0.01}
INSTALLED = available_engines()


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def cer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalise(reference), normalise(hypothesis)
    return Levenshtein.distance(ref, hyp) / len(ref)


@pytest.fixture(scope="module")
def page() -> tuple[bytes, str]:
    """The clip's PNG as the gateway renders it (200 DPI gray), and its text layer."""
    with pymupdf.open(sample("pdflatex-4-pages.pdf")) as document:
        first = document[0]
        png = first.get_pixmap(dpi=DPI, colorspace=pymupdf.csGRAY, clip=CLIP).tobytes("png")
        text = first.get_text(clip=CLIP)
    assert len(normalise(text)) > 500
    return png, text


def turned(png: bytes, transpose: Image.Transpose) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).transpose(transpose).save(out, format="PNG", dpi=(DPI, DPI))
    return out.getvalue()


def test_every_engine_the_setting_names_can_be_built_here() -> None:
    """CI installs every engine (Makefile, .ci/run): none may be silently missing."""
    assert list(ENGINES) == INSTALLED


@pytest.mark.parametrize("name", ENGINES)
def test_an_engine_reads_a_sample_page_within_its_cer_bound(
    name: str, page: tuple[bytes, str]
) -> None:
    png, reference = page
    output = build_engine(name).recognize(png)
    assert output.text.startswith("Hello, here is some text without a meaning.")
    assert cer(reference, output.text) <= MAX_CER[name]
    assert output.boxes and all(0 <= (box["confidence"] or 0) <= 1 for box in output.boxes)
    width, height = Image.open(io.BytesIO(png)).size
    for box in output.boxes:
        x0, y0, x1, y1 = box["bbox"]
        assert 0 <= x0 < x1 <= width + 2 and 0 <= y0 < y1 <= height + 2


@pytest.mark.parametrize("turn", [90, 180])
def test_tesserocr_reads_a_page_received_on_its_side_or_upside_down(
    turn: int, page: tuple[bytes, str]
) -> None:
    png, reference = page
    engine = build_engine("tesserocr")
    upright = engine.recognize(png)
    # The received page is the upright one turned the other way than UPRIGHT[turn] turns it.
    received = turned(png, UPRIGHT[(360 - turn) % 360])
    output: OcrOutput = engine.recognize(received)
    assert cer(reference, output.text) <= MAX_CER["tesserocr"]
    width, height = Image.open(io.BytesIO(received)).size
    for box, straight in zip(output.boxes, upright.boxes, strict=True):
        expected = unturn_bbox(straight["bbox"], turn, width, height)
        assert box["bbox"] == pytest.approx(expected, abs=3), box["text"]


@pytest.mark.parametrize("turn", sorted(UPRIGHT))
def test_a_box_on_the_upright_page_maps_back_to_the_pixels_received(turn: int) -> None:
    """One black pixel: where the upright page has it, unturn_bbox finds it on the page received."""
    width, height = 40, 30
    received = Image.new("L", (width, height), 255)
    received.putpixel((7, 5), 0)
    upright = received.transpose(UPRIGHT[turn])
    found = [
        (x, y)
        for x in range(upright.width)
        for y in range(upright.height)
        if upright.getpixel((x, y)) == 0
    ]
    assert len(found) == 1
    u, v = found[0]
    assert unturn_bbox([u, v, u + 1, v + 1], turn, width, height) == [7, 5, 8, 6]


def test_tesserocr_detects_lines_alone_and_reads_the_boxes_it_is_given(
    page: tuple[bytes, str],
) -> None:
    """The `detect` and `recognize` page tasks (worker/regions.py) on tesserocr."""
    png, reference = page
    engine = build_engine("tesserocr")
    assert isinstance(engine, RegionEngine)
    detected = run_region_task(engine, "detect", png, None)
    assert detected.text == "" and len(detected.boxes) >= 10
    asked = [{"id": box["id"], "points": box["points"]} for box in detected.boxes]
    read = run_region_task(engine, "recognize", png, asked)
    assert [box["id"] for box in read.boxes] == [box["id"] for box in asked]
    assert cer(reference, read.text) <= MAX_CER["tesserocr"]
