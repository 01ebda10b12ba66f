"""Inspection and rendering; these functions run inside pool processes, never on the event loop.

PDFs are rasterised with PyMuPDF. Images are decoded with Pillow, which reads every format the
gateway takes (multi-page TIFF frame by frame) and checks a header's pixel count before decoding.
A worker process keeps the last PDF it opened, so a job's pages are rendered from one open
Document per process, and nothing PyMuPDF holds ever crosses a process boundary.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

from PIL import Image, UnidentifiedImageError

from ocr_gateway.ingest.media import MediaType

# PyMuPDF 2 imports its optional layout-analysis model (ONNX Runtime, NumPy) and pymupdf4llm when
# it is imported: about 90 MB and a second or more in every pool process, none of it used for
# rasterising. Declaring them absent makes `import pymupdf` skip them, as when not installed.
for _unused in ("pymupdf.layout", "pymupdf4llm"):
    sys.modules.setdefault(_unused, cast(ModuleType, None))

import pymupdf  # noqa: E402

PDF_TAIL_BYTES = 2048


@dataclass(frozen=True, slots=True)
class RenderOptions:
    dpi: int
    grayscale: bool
    max_page_pixels: int


@dataclass(frozen=True, slots=True)
class Inspection:
    """What an upload holds: its page count, or why it is refused (`problem` names the kind)."""

    page_count: int = 0
    problem: str | None = None
    detail: str = ""


def page_pixels(width_pt: float, height_pt: float, dpi: int) -> int:
    scale = dpi / 72.0
    return round(width_pt * scale) * round(height_pt * scale)


def inspect_document(
    path: str, media_type: str, max_pages: int, options: RenderOptions
) -> Inspection:
    """Check that the upload can be rendered within the limits, without rendering it."""
    if media_type == MediaType.PDF:
        return _inspect_pdf(path, max_pages, options)
    return _inspect_image(path, max_pages, options)


def _inspect_pdf(path: str, max_pages: int, options: RenderOptions) -> Inspection:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - PDF_TAIL_BYTES))
        tail = handle.read()
    if b"%%EOF" not in tail:
        return Inspection(problem="truncated", detail="the PDF is truncated (no %%EOF marker)")
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except Exception as exc:
        return Inspection(problem="unreadable", detail=f"the PDF cannot be read: {exc}")
    with doc:
        if doc.needs_pass:
            return Inspection(problem="encrypted", detail="the PDF is encrypted with a password")
        count = doc.page_count
        if count == 0:
            return Inspection(problem="no_pages", detail="the PDF has no pages")
        if count > max_pages:
            return Inspection(
                problem="too_many_pages",
                detail=f"the PDF has {count} pages; the limit is {max_pages}",
            )
        for index in range(count):
            try:
                rect = doc.page_cropbox(index)
            except Exception as exc:
                return Inspection(
                    problem="unreadable", detail=f"page {index + 1} cannot be read: {exc}"
                )
            pixels = page_pixels(rect.width, rect.height, options.dpi)
            if pixels > options.max_page_pixels:
                return Inspection(
                    problem="page_too_large",
                    detail=(
                        f"page {index + 1} would be {pixels} pixels at {options.dpi} DPI;"
                        f" the limit is {options.max_page_pixels}"
                    ),
                )
        return Inspection(page_count=count)


def _follow_pixel_budget(options: RenderOptions) -> None:
    """Make Pillow's decompression-bomb check use the gateway's budget, not its own default.

    Pillow then refuses an oversized header in `Image.open`, before decoding a pixel, and never
    refuses an image the budget allows (its default is 89 Mpx; MAX_PAGE_PIXELS may be higher).
    """
    Image.MAX_IMAGE_PIXELS = options.max_page_pixels


def _inspect_image(path: str, max_pages: int, options: RenderOptions) -> Inspection:
    _follow_pixel_budget(options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > max_pages:
                    return Inspection(
                        problem="too_many_pages",
                        detail=f"the image has {frames} frames; the limit is {max_pages}",
                    )
                for frame in range(frames):
                    image.seek(frame)
                    width, height = image.size
                    if width * height > options.max_page_pixels:
                        return Inspection(
                            problem="page_too_large",
                            detail=(
                                f"frame {frame + 1} is {width}x{height} pixels;"
                                f" the limit is {options.max_page_pixels} pixels"
                            ),
                        )
                    image.load()
                return Inspection(page_count=frames)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Inspection(
            problem="page_too_large",
            detail=f"the image is over the limit of {options.max_page_pixels} pixels per page",
        )
    except UnidentifiedImageError:
        return Inspection(problem="unreadable", detail="the image cannot be decoded")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        return Inspection(problem="unreadable", detail=f"the image cannot be decoded: {exc}")


# ------------------------------------------------------------------ rendering

_open_pdf: tuple[str, pymupdf.Document] | None = None


def _pdf(path: str) -> pymupdf.Document:
    """The worker's cached Document for `path`, opened once per process."""
    global _open_pdf
    if _open_pdf is not None and _open_pdf[0] == path:
        return _open_pdf[1]
    if _open_pdf is not None:
        _open_pdf[1].close()
        _open_pdf = None
        # Free what the previous document left in MuPDF's store; within one document, shared
        # fonts and images stay cached across its pages.
        pymupdf.TOOLS.store_shrink(100)
    doc = pymupdf.open(path, filetype="pdf")
    _open_pdf = (path, doc)
    return doc


class RenderFailure(Exception):
    """A page could not be rendered or written; the message says why, for the job's error."""


def render_pages(
    source: str,
    media_type: str,
    page_numbers: list[int],
    out_dir: str,
    options: RenderOptions,
) -> list[tuple[int, str]]:
    """Render 1-based `page_numbers` of `source` to `<out_dir>/<n>.png`; returns (n, path) pairs.

    Each PNG is written to a `.part` file and renamed, so a page file is complete or absent.
    `out_dir` must exist: a job deleted while its pages render has no folder, and the write
    fails instead of recreating it.
    """
    written: list[tuple[int, str]] = []
    for number in page_numbers:
        png = (
            _render_pdf_page(source, number, options)
            if media_type == MediaType.PDF
            else _render_image_frame(source, number, options)
        )
        target = Path(out_dir) / f"{number}.png"
        _write_atomically(target, png)
        written.append((number, str(target)))
    return written


def _render_pdf_page(source: str, number: int, options: RenderOptions) -> bytes:
    page = _pdf(source).load_page(number - 1)
    rect = page.rect
    if page_pixels(rect.width, rect.height, options.dpi) > options.max_page_pixels:
        raise RenderFailure(f"page {number} exceeds the pixel budget")
    colorspace = pymupdf.csGRAY if options.grayscale else pymupdf.csRGB
    pixmap = page.get_pixmap(dpi=options.dpi, colorspace=colorspace, alpha=False)
    return bytes(pixmap.tobytes("png"))


def _render_image_frame(source: str, number: int, options: RenderOptions) -> bytes:
    import io

    _follow_pixel_budget(options)
    with Image.open(source) as image:
        image.seek(number - 1)
        if image.width * image.height > options.max_page_pixels:
            raise RenderFailure(f"frame {number} exceeds the pixel budget")
        frame = image.convert("L" if options.grayscale else "RGB")
    buffer = io.BytesIO()
    frame.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _write_atomically(target: Path, data: bytes) -> None:
    partial = target.with_suffix(".png.part")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise RenderFailure(f"no space left on the device writing {target.name}") from exc
        raise RenderFailure(f"cannot write {target.name}: {exc.strerror or exc}") from exc


def warm_up() -> int:
    """A pool's start-up probe from this module, so its workers import PyMuPDF before use."""
    return os.getpid()
