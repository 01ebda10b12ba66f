"""The pdf and zip builders, run in a pool process: each reads the job's pages from a manifest
(one json result page entry a line, written by the API process) and the page PNGs from local
copies the API process lends (`ArtefactStore.local_copies`, by page number), and writes the
result to a scratch file that the API process then hands to the store.

The zip streams every member; the pdf is held by its pool process until it is saved (about
the size of the page images), never by the API process.
"""

from __future__ import annotations

import contextlib
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pymupdf

from ocr_gateway.exports.formats import (
    JSON_TAIL,
    POINTS_PER_INCH,
    box_points,
    json_head,
    member_stem,
    place_words,
    png_size,
)

# The font of the invisible text layer: one of PDF's standard fonts, so nothing is embedded.
TEXT_FONT = "helv"


def read_manifest(manifest: Path) -> Iterator[dict[str, Any]]:
    with manifest.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield orjson.loads(line)


def draw_text_layer(page: pymupdf.Page, boxes: list[dict[str, Any]], dpi: int) -> int:
    """Put each box's words on `page`, invisible (render mode 3), as tall as the box and
    stretched to its width; returns how many boxes were placed."""
    font = pymupdf.Font(TEXT_FONT)
    shape = page.new_shape()
    placed = 0
    for box in boxes:
        words = " ".join(str(box.get("text") or "").split())
        if not words:
            continue
        placement = place_words(
            box_points(box["polygon"], dpi),
            font.text_length(words, fontsize=1),
            font.ascender,
            font.descender,
        )
        if placement is None:
            continue
        origin = pymupdf.Point(placement.x, placement.baseline)
        shape.insert_text(
            origin,
            words,
            fontsize=placement.fontsize,
            fontname=TEXT_FONT,
            render_mode=3,
            morph=(origin, pymupdf.Matrix(placement.stretch, 1)),
        )
        placed += 1
    if placed:
        shape.commit(overlay=True)
    return placed


def add_page(doc: pymupdf.Document, png: Path, boxes: list[dict[str, Any]], dpi: int) -> None:
    """One page of the searchable pdf: the page image at its rendering size, words over it."""
    with png.open("rb") as image:
        width, height = png_size(image.read(24))
    scale = POINTS_PER_INCH / dpi
    page = doc.new_page(width=width * scale, height=height * scale)
    page.insert_image(page.rect, filename=str(png))
    draw_text_layer(page, boxes, dpi)


def build_pdf(manifest: str, pngs: dict[int, str], dpi: int, target: str) -> int:
    """The searchable pdf of the manifest's pages, written to `target`; returns its page
    count. `pngs` gives each page's PNG by page number: a page without one (deleted meanwhile)
    is left out."""
    with _written(Path(target)) as temporary:
        return _write_pdf(Path(manifest), pngs, dpi, temporary)


@contextlib.contextmanager
def _written(target: Path) -> Iterator[Path]:
    """A temporary name beside `target`, renamed to it when the block ends well and removed
    when it fails: `target` is whole or absent."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def _write_pdf(manifest: Path, pngs: dict[int, str], dpi: int, temporary: Path) -> int:
    pages = 0
    with pymupdf.open() as doc:
        for entry in read_manifest(manifest):
            png = pngs.get(entry["page_number"])
            if png is None:
                continue
            add_page(doc, Path(png), entry["boxes"], dpi)
            pages += 1
        if pages == 0:
            # A pdf has at least one page: an empty one stands for a job without pages.
            doc.new_page()
        doc.save(temporary, garbage=0, deflate=True)
    return pages


def build_zip(manifest: str, pngs: dict[int, str], job_id: str, target: str) -> int:
    """`pages/0001.png`, `pages/0001.txt`, ... and `result.json`, written to `target`; returns
    the page count. `pngs` as for `build_pdf`."""
    with _written(Path(target)) as temporary:
        return _write_zip(Path(manifest), pngs, uuid.UUID(job_id), temporary)


def _write_zip(manifest: Path, pngs: dict[int, str], job_id: uuid.UUID, temporary: Path) -> int:
    pages = 0
    with zipfile.ZipFile(temporary, "w", allowZip64=True) as archive:
        for entry in read_manifest(manifest):
            stem = member_stem(entry["page_number"])
            png = pngs.get(entry["page_number"])
            if png is not None:
                # PNGs are compressed already: stored as they are.
                archive.write(png, f"{stem}.png", compress_type=zipfile.ZIP_STORED)
            archive.writestr(f"{stem}.txt", entry["text"] or "", compress_type=zipfile.ZIP_DEFLATED)
            pages += 1
        info = zipfile.ZipInfo("result.json")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as result:
            result.write(json_head(job_id))
            for index, entry in enumerate(read_manifest(manifest)):
                result.write((b"," if index else b"") + orjson.dumps(entry))
            result.write(JSON_TAIL)
    return pages
