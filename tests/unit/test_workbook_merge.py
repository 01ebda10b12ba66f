"""The batch merge behind a `/convert/batch` job (convert/merge.py), on real files: every page of
every file in order, a PDF's text layer kept, an image frame placed so that it renders at its
own pixels, a multi-frame image a page a frame, and the limits held for the batch as a whole
before anything is written."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from ocr_gateway.convert.merge import merge_files
from ocr_gateway.rendering.inspection import Limits
from ocr_gateway.rendering.mupdf import RenderOptions
from tests.support.documents import blank_pdf, sample

DPI = 200
OPTIONS = RenderOptions(dpi=DPI, grayscale=True, max_page_pixels=25_000_000)
LIMITS = Limits(max_pages=50, max_page_pixels=25_000_000, max_document_pixels=10**10)


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "P") else (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _frames(count: int) -> bytes:
    frames = [Image.new("L", (40 + 10 * n, 30), 255 - 40 * n) for n in range(count)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def test_every_page_in_order_at_its_own_pixels_with_the_text_layer_kept(tmp_path: Path) -> None:
    files = [
        (_write(tmp_path, "shot.png", _png((321, 123))), "image/png"),
        (str(sample("pdflatex-4-pages.pdf")), "application/pdf"),
        (str(sample("image.jpg")), "image/jpeg"),
        (_write(tmp_path, "scan.tiff", _frames(3)), "image/tiff"),
        (_write(tmp_path, "gray.png", _png((50, 60), "L")), "image/png"),
    ]
    target = tmp_path / "merged.pdf"
    merged = merge_files(files, str(target), LIMITS, OPTIONS)
    assert merged.inspection.problem is None, merged.inspection.detail
    assert merged.pages_per_file == [1, 4, 1, 3, 1]
    assert merged.inspection.page_count == 10
    with Image.open(sample("image.jpg")) as photo:
        photo_size = photo.size
    with pymupdf.open(target) as doc, pymupdf.open(sample("pdflatex-4-pages.pdf")) as paper:
        sizes = [(p.get_pixmap(dpi=DPI).width, p.get_pixmap(dpi=DPI).height) for p in doc]
        assert sizes[0] == (321, 123)
        assert sizes[5] == photo_size
        assert sizes[6:9] == [(40, 30), (50, 30), (60, 30)]
        assert sizes[9] == (50, 60)
        for number in range(4):
            assert doc[1 + number].get_text() == paper[number].get_text()
            assert doc[1 + number].rect == paper[number].rect
        assert doc[0].get_text() == ""
    assert merged.inspection.largest_page_pixels == max(w * h for w, h in sizes)


def test_an_image_page_renders_the_frames_own_pixels(tmp_path: Path) -> None:
    image = Image.new("L", (64, 48), 255)
    for x in range(0, 64, 4):
        for y in range(48):
            image.putpixel((x, y), 0)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    target = tmp_path / "merged.pdf"
    merge_files(
        [(_write(tmp_path, "bars.png", buffer.getvalue()), "image/png")],
        str(target),
        LIMITS,
        OPTIONS,
    )
    with pymupdf.open(target) as doc:
        pixmap = doc[0].get_pixmap(dpi=DPI, colorspace=pymupdf.csGRAY)
    rendered = Image.frombytes("L", (pixmap.width, pixmap.height), pixmap.samples)
    assert rendered.size == image.size
    assert rendered.tobytes() == image.tobytes()


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        (
            Limits(max_pages=4, max_page_pixels=25_000_000, max_document_pixels=10**10),
            "too_many_pages",
        ),
        (
            Limits(max_pages=50, max_page_pixels=10_000, max_document_pixels=10**10),
            "page_too_large",
        ),
        (
            Limits(max_pages=50, max_page_pixels=25_000_000, max_document_pixels=8_000_000),
            "document_too_large",
        ),
    ],
)
def test_the_batch_as_a_whole_is_held_to_the_limits_before_anything_is_written(
    tmp_path: Path, limits: Limits, problem: str
) -> None:
    files = [
        (_write(tmp_path, "a.pdf", blank_pdf(3)), "application/pdf"),
        (_write(tmp_path, "b.pdf", blank_pdf(2)), "application/pdf"),
    ]
    target = tmp_path / "merged.pdf"
    merged = merge_files(files, str(target), limits, OPTIONS)
    assert merged.inspection.problem == problem, merged.inspection
    assert "limit" in merged.inspection.detail
    assert not target.exists()


def test_an_unreadable_file_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    files = [(_write(tmp_path, "cut.png", _png((20, 20))[:40]), "image/png")]
    merged = merge_files(files, str(tmp_path / "merged.pdf"), LIMITS, OPTIONS)
    assert merged.inspection.problem == "unreadable"
    assert merged.inspection.detail.startswith("the files cannot be merged")
