"""Inspection of an upload, run in an inspect process: can it be rendered within the limits?

The cost of inspecting is bounded before anything is decoded: page or frame counts and sizes
come from the file's header and page tree (a TIFF's directories, a WebP's canvas, a PDF's page
boxes), and the totals are held to the limits first. Only then are image frames decoded, and
only up to `DECODE_CHECK_PIXELS`, so that a broken ordinary image is refused at once while a
long animation costs no more than a few frames here. Every error from a library becomes plain
data (`Inspection.problem`), never an exception crossing the process boundary.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ocr_gateway.core.errors import describe
from ocr_gateway.rendering.mupdf import RenderOptions, follow_pixel_budget, page_pixels, pymupdf
from ocr_gateway.uploads.media import MediaType

PDF_TAIL_BYTES = 2048
# Frames decoded during inspection, counted in pixels: a few pages' worth.
DECODE_CHECK_PIXELS = 60_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    """What an upload may be: pages, and pixels per page and in all (at the render DPI)."""

    max_pages: int
    max_page_pixels: int
    max_document_pixels: int


@dataclass(frozen=True, slots=True)
class Inspection:
    """What an upload holds, or why it is refused (`problem` names the kind).

    `largest_page_pixels` lets the renderer size its chunks, so that one chunk of huge frames
    never holds a render process for long.
    """

    page_count: int = 0
    largest_page_pixels: int = 0
    problem: str | None = None
    detail: str = ""


def inspect_document(
    path: str, media_type: str, limits: Limits, options: RenderOptions
) -> Inspection:
    """Check that the upload can be rendered within the limits, without rendering it."""
    try:
        if media_type == MediaType.PDF:
            return _inspect_pdf(path, limits, options)
        return _inspect_image(path, limits, options)
    except Exception as exc:  # whatever a library raises on hostile bytes is the file's fault
        return Inspection(problem="unreadable", detail=f"the file cannot be read: {describe(exc)}")


def check_sizes(kind: str, sizes: list[int], limits: Limits, dpi_note: str = "") -> Inspection:
    """Hold page sizes (in pixels) to the per-page, page-count and whole-document limits."""
    if len(sizes) > limits.max_pages:
        return Inspection(
            problem="too_many_pages",
            detail=f"the {kind} has {len(sizes)} pages; the limit is {limits.max_pages}",
        )
    for number, pixels in enumerate(sizes, start=1):
        if pixels > limits.max_page_pixels:
            return Inspection(
                problem="page_too_large",
                detail=(
                    f"page {number} would be {pixels} pixels{dpi_note};"
                    f" the limit is {limits.max_page_pixels}"
                ),
            )
    total = sum(sizes)
    if total > limits.max_document_pixels:
        return Inspection(
            problem="document_too_large",
            detail=(
                f"the {kind}'s {len(sizes)} pages would be {total} pixels in all{dpi_note};"
                f" the limit is {limits.max_document_pixels} (MAX_DOCUMENT_PIXELS)"
            ),
        )
    return Inspection(page_count=len(sizes), largest_page_pixels=max(sizes, default=0))


def merge_refusal(exc: Exception, limits: Limits, what: str) -> Inspection:
    """The verdict on a merge of several files that raised: Pillow's decompression-bomb guard
    means a page over the pixel limit; anything else means `what` cannot be merged."""
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return Inspection(
            problem="page_too_large",
            detail=f"an image is over the limit of {limits.max_page_pixels} pixels per page",
        )
    return Inspection(problem="unreadable", detail=f"{what} cannot be merged: {describe(exc)}")


def _inspect_pdf(path: str, limits: Limits, options: RenderOptions) -> Inspection:
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
        return Inspection(problem="unreadable", detail=f"the PDF cannot be read: {describe(exc)}")
    with doc:
        if doc.needs_pass:
            return Inspection(problem="encrypted", detail="the PDF is encrypted with a password")
        try:
            count = doc.page_count
        except Exception as exc:  # a page tree whose /Count lies
            return Inspection(
                problem="unreadable", detail=f"the PDF's page tree is broken: {describe(exc)}"
            )
        if count == 0:
            return Inspection(problem="no_pages", detail="the PDF has no pages")
        if count > limits.max_pages:
            return Inspection(
                problem="too_many_pages",
                detail=f"the PDF has {count} pages; the limit is {limits.max_pages}",
            )
        sizes = []
        for index in range(count):
            try:
                rect = doc.page_cropbox(index)
            except Exception as exc:
                return Inspection(
                    problem="unreadable", detail=f"page {index + 1} cannot be read: {describe(exc)}"
                )
            sizes.append(page_pixels(rect.width, rect.height, options.dpi))
        return check_sizes("PDF", sizes, limits, f" at {options.dpi} DPI")


def _frame_sizes(image: Image.Image, frames: int) -> list[int]:
    """Each frame's pixels, read from headers only. A TIFF's frames each have their own
    directory, and seeking one reads only its tags; every other format's frames are drawn on
    one canvas, the image's size."""
    if image.format != "TIFF":
        return [image.width * image.height] * frames
    sizes = []
    for frame in range(frames):
        image.seek(frame)
        sizes.append(image.width * image.height)
    image.seek(0)
    return sizes


# A JPEG is decoded at 1/8 scale to check it: libjpeg still reads its whole entropy-coded
# stream, so a truncated or corrupt file fails just as a full decode would, but skips most of
# the inverse DCT and colour conversion (6 ms instead of 19 ms for a 3000x2000 photo).
JPEG_CHECK_SCALE = 8


def _decode_some(image: Image.Image, sizes: list[int]) -> None:
    """Decode frames in order while the pixels decoded stay within DECODE_CHECK_PIXELS; the
    first frame is always decoded. A frame that fails raises, naming its number."""
    decoded = 0
    for frame, pixels in enumerate(sizes):
        if frame and decoded + pixels > DECODE_CHECK_PIXELS:
            return
        try:
            image.seek(frame)
            if image.format == "JPEG":
                scaled = (image.width // JPEG_CHECK_SCALE, image.height // JPEG_CHECK_SCALE)
                image.draft(image.mode, scaled)
            image.load()
        except Exception as exc:
            raise ValueError(f"frame {frame + 1}: {describe(exc)}") from None
        decoded += pixels


def _inspect_image(path: str, limits: Limits, options: RenderOptions) -> Inspection:
    follow_pixel_budget(options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                frames = getattr(image, "n_frames", 1)
                if frames > limits.max_pages:
                    return Inspection(
                        problem="too_many_pages",
                        detail=f"the image has {frames} frames; the limit is {limits.max_pages}",
                    )
                sizes = _frame_sizes(image, frames)
                verdict = check_sizes("image", sizes, limits)
                if verdict.problem is None:
                    _decode_some(image, sizes)
                return verdict
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return Inspection(
            problem="page_too_large",
            detail=f"the image is over the limit of {limits.max_page_pixels} pixels per page",
        )
    except UnidentifiedImageError:
        return Inspection(problem="unreadable", detail="the image cannot be decoded")
    except Exception as exc:
        return Inspection(
            problem="unreadable", detail=f"the image cannot be decoded: {describe(exc)}"
        )
