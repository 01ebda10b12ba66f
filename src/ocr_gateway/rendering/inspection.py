"""Inspection of an upload, run in the inspect pool: can it be rendered within the limits?"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ocr_gateway.rendering.mupdf import RenderOptions, follow_pixel_budget, page_pixels, pymupdf
from ocr_gateway.uploads.media import MediaType

PDF_TAIL_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Inspection:
    """What an upload holds: its page count, or why it is refused (`problem` names the kind)."""

    page_count: int = 0
    problem: str | None = None
    detail: str = ""


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


def _inspect_image(path: str, max_pages: int, options: RenderOptions) -> Inspection:
    follow_pixel_budget(options)
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
