"""Rendering pages to PNG files, run in the render pool.

PDFs are rasterised with PyMuPDF. Images are decoded with Pillow, which reads every format the
gateway takes (multi-page TIFF and animated WebP or PNG frame by frame) and checks a header's
pixel count before decoding. A worker process keeps the last document it opened: a job's pages
are rendered from one open Document (or Image) per process, and an animation's frames are
decoded forward from the last one, so a process decodes each frame at most once (decoding
frame n of an animation means decoding the frames before it). Nothing a library holds ever
crosses the process boundary, its errors included: they become a RenderFailure's text.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

from PIL import Image

from ocr_gateway.core.errors import describe
from ocr_gateway.rendering.mupdf import RenderOptions, follow_pixel_budget, page_pixels, pymupdf
from ocr_gateway.uploads.media import MediaType

_open_pdf: tuple[str, pymupdf.Document] | None = None
_open_image: tuple[str, Image.Image] | None = None


def pdf_document(path: str) -> pymupdf.Document:
    """The worker's cached Document for `path`, opened once per process (the text-layer
    reader uses the same one)."""
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
    `out_dir` is the job's scratch folder under TEMP_DIR; the renderer moves the PNGs from it
    into the artefact store.
    """
    written: list[tuple[int, str]] = []
    for number in page_numbers:
        try:
            png = (
                _render_pdf_page(source, number, options)
                if media_type == MediaType.PDF
                else _render_image_frame(source, number, options)
            )
        except RenderFailure:
            raise
        except Exception as exc:  # the library's own reason, as text that crosses processes
            _forget_documents()
            raise RenderFailure(f"page {number}: {describe(exc)}") from None
        target = Path(out_dir) / f"{number}.png"
        _write_atomically(target, png)
        written.append((number, str(target)))
    return written


def _render_pdf_page(source: str, number: int, options: RenderOptions) -> bytes:
    page = pdf_document(source).load_page(number - 1)
    rect = page.rect
    if page_pixels(rect.width, rect.height, options.dpi) > options.max_page_pixels:
        raise RenderFailure(f"page {number} exceeds the pixel budget")
    colorspace = pymupdf.csGRAY if options.grayscale else pymupdf.csRGB
    pixmap = page.get_pixmap(dpi=options.dpi, colorspace=colorspace, alpha=False)
    return bytes(pixmap.tobytes("png"))


def _forget_documents() -> None:
    """Close the cached Document and Image: after a library error their state is unknown."""
    global _open_pdf, _open_image
    if _open_pdf is not None:
        _open_pdf[1].close()
        _open_pdf = None
    if _open_image is not None:
        _open_image[1].close()
        _open_image = None


def _image(path: str) -> Image.Image:
    """The worker's cached Image for `path`; Pillow keeps its place in an animation."""
    global _open_image
    if _open_image is not None and _open_image[0] == path:
        return _open_image[1]
    if _open_image is not None:
        _open_image[1].close()
        _open_image = None
    image = Image.open(path)
    _open_image = (path, image)
    return image


def _render_image_frame(source: str, number: int, options: RenderOptions) -> bytes:
    follow_pixel_budget(options)
    image = _image(source)
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
