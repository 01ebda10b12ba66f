"""The files of a `/convert/batch` as one PDF, run in an inspect process: the batch is one
job, and a job has one source file.

A PDF's pages are copied as they are (`insert_pdf`), so a born-digital page keeps its text
layer, and its tables can be read from it at render time. Each frame of an image becomes a page
exactly as large, at the render DPI, as the frame is in pixels: rendering the page gives back
the frame's own pixels, neither scaled up nor down. A JPEG, and a PNG already in the render
mode (grayscale or RGB), is placed as it is; other images are converted frame by frame as the
renderer converts them and stored losslessly. The page sizes of all the files together are
first held to the limits of one upload (`check_sizes`), from headers and page boxes, before a
page is written.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageSequence

from ocr_gateway.rendering.frames import frame_sizes
from ocr_gateway.rendering.inspection import Inspection, Limits, check_sizes, merge_refusal
from ocr_gateway.rendering.mupdf import (
    RenderOptions,
    follow_pixel_budget,
    page_pixels,
    pymupdf,
)
from ocr_gateway.uploads.media import MediaType

POINTS_PER_INCH = 72.0


@dataclass(frozen=True, slots=True)
class MergedBatch:
    """The merged document's inspection (pages and largest page, or its `problem`), and how
    many pages each file became, in order."""

    inspection: Inspection
    pages_per_file: list[int] = field(default_factory=list)


def merge_files(
    files: Sequence[tuple[str, str]], target: str, limits: Limits, options: RenderOptions
) -> MergedBatch:
    """Write the pages of `files` (path, media type), in order, as one PDF at `target`."""
    follow_pixel_budget(options)
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as open_files:
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Each PDF is opened once: its page boxes are read, then its pages copied.
            sources: list[pymupdf.Document | None] = []
            per_file: list[list[int]] = []
            for path, media_type in files:
                if media_type == MediaType.PDF:
                    doc = open_files.enter_context(pymupdf.open(path, filetype="pdf"))
                    sources.append(doc)
                    per_file.append(_pdf_page_sizes(doc, options))
                else:
                    sources.append(None)
                    with Image.open(path) as image:
                        per_file.append(frame_sizes(image))
            verdict = check_sizes(
                "batch",
                [size for sizes in per_file for size in sizes],
                limits,
                f" at {options.dpi} DPI",
            )
            if verdict.problem is not None:
                return MergedBatch(verdict)
            with pymupdf.open() as merged:
                for (path, media_type), source in zip(files, sources, strict=True):
                    if source is not None:
                        merged.insert_pdf(source)
                    else:
                        _add_image(merged, path, media_type, options)
                merged.save(target, garbage=1, deflate=True)
    except Exception as exc:
        return MergedBatch(merge_refusal(exc, limits, "the files"))
    return MergedBatch(verdict, [len(sizes) for sizes in per_file])


def _pdf_page_sizes(doc: pymupdf.Document, options: RenderOptions) -> list[int]:
    """Each page's pixels at the render DPI, from its page box."""
    return [
        page_pixels(box.width, box.height, options.dpi)
        for box in (doc.page_cropbox(i) for i in range(doc.page_count))
    ]


def _add_image(
    merged: pymupdf.Document, path: str, media_type: str, options: RenderOptions
) -> None:
    """One page a frame, each `width x height` pixels at the render DPI."""
    scale = POINTS_PER_INCH / options.dpi
    mode = "L" if options.grayscale else "RGB"
    with Image.open(path) as image:
        single = getattr(image, "n_frames", 1) == 1
        as_it_is = media_type == MediaType.JPEG or (
            media_type == MediaType.PNG and image.mode == mode
        )
        if single and as_it_is:
            page = merged.new_page(width=image.width * scale, height=image.height * scale)
            page.insert_image(page.rect, filename=path)
            return
        for frame in ImageSequence.Iterator(image):
            converted = frame.convert(mode)
            buffer = io.BytesIO()
            converted.save(buffer, format="PNG", compress_level=1)
            page = merged.new_page(width=frame.width * scale, height=frame.height * scale)
            page.insert_image(page.rect, stream=buffer.getvalue())
