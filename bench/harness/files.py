"""The documents the bench renders and the page files it seeds, made on the fly."""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path

from ocr_gateway.rendering.mupdf import pymupdf

WORDS = [
    *("the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be"),
    *("by", "on", "not", "this", "are", "or", "from", "at", "which", "but", "have", "an"),
    *("they", "were", "their", "one", "all", "we", "can", "has", "there", "been", "if", "more"),
    *("rock", "layer", "basin", "fault", "river", "survey", "map", "scale", "height", "slope"),
]


def make_generated_pdf(path: Path, pages: int) -> None:
    """Book-like text pages: a heading, 45 lines of words and a frame, deterministic."""
    rng = random.Random(4)
    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 60), f"Chapter {number // 20 + 1}, page {number}", fontsize=16)
        body = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(45))
        page.insert_textbox(pymupdf.Rect(72, 80, 523, 800), body, fontsize=10)
        page.draw_rect(pymupdf.Rect(60, 50, 535, 810), color=(0.3, 0.3, 0.3), width=0.5)
    doc.save(str(path), garbage=3, deflate=True)
    doc.close()


def make_subset_pdf(source: Path, target: Path, pages: int) -> None:
    with pymupdf.open(str(source)) as src:
        dst = pymupdf.open()
        dst.insert_pdf(src, from_page=0, to_page=pages - 1)
        dst.save(str(target))
        dst.close()


def page_count(path: Path) -> int:
    with pymupdf.open(str(path)) as doc:
        return int(doc.page_count)


def make_tiny_png(path: Path) -> None:
    pixmap = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 64, 64), False)
    pixmap.clear_with(255)
    path.write_bytes(pixmap.tobytes("png"))


def reset_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def clear_dir(path: Path) -> None:
    if path.exists():
        for child in path.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def count_files(path: Path, pattern: str) -> int:
    return sum(1 for _ in path.glob(pattern)) if path.exists() else 0


def link_pages(
    files_dir: Path, renders: list[Path], jobs: list[tuple[uuid.UUID, int]]
) -> list[tuple[uuid.UUID, int, str, str]]:
    """files/<job>/<n>.png as hard links to the rendered sample pages (copies if links fail)."""
    records = []
    for job_id, count in jobs:
        folder = files_dir / str(job_id)
        folder.mkdir(parents=True)
        for number in range(1, count + 1):
            target = folder / f"{number}.png"
            source = renders[(number - 1) % len(renders)]
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
            records.append((job_id, number, str(target), "pending"))
    return records
