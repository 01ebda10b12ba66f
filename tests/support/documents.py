"""Test documents: the sample files kept in tests/data, and PDFs made on the fly."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "data"


def sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        pytest.fail(f"sample {path} is missing from tests/data")
    return path


def blank_pdf(pages: int, width: float = 595, height: float = 842) -> bytes:
    """A PDF of `pages` pages, each numbered in its text so pages differ."""
    import pymupdf

    doc = pymupdf.open()
    for number in range(1, pages + 1):
        page = doc.new_page(width=width, height=height)
        page.insert_text((72, 72), f"Page {number}", fontsize=24)
    data: bytes = doc.tobytes()
    doc.close()
    return data
