"""Inspection's cost is bounded before decoding, and its limits count every page."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from ocr_gateway.rendering.inspection import (
    DECODE_CHECK_PIXELS,
    Limits,
    check_sizes,
    inspect_document,
    merge_refusal,
)
from ocr_gateway.rendering.mupdf import RenderOptions
from tests.support.hostile import (
    FrameDecodes,
    animated_webp,
    pdf_with_lying_page_count,
    tiff_frame_without_width,
)

OPTIONS = RenderOptions(dpi=200, grayscale=True, max_page_pixels=25_000_000)
LIMITS = Limits(max_pages=10, max_page_pixels=100, max_document_pixels=500)


def test_check_sizes_holds_pages_to_each_limit() -> None:
    assert check_sizes("PDF", [100] * 5, LIMITS).page_count == 5
    assert check_sizes("PDF", [100] * 5, LIMITS).largest_page_pixels == 100
    assert check_sizes("PDF", [1] * 11, LIMITS).problem == "too_many_pages"
    assert check_sizes("PDF", [50, 101], LIMITS).problem == "page_too_large"
    over = check_sizes("PDF", [100] * 6, LIMITS)
    assert over.problem == "document_too_large"
    assert "600 pixels" in over.detail


def test_a_long_animation_is_inspected_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 frames of 5000x5000 within generous limits: only the frames that fit in
    DECODE_CHECK_PIXELS are decoded (decoding them all took a minute)."""
    source = tmp_path / "long.webp"
    source.write_bytes(animated_webp(2000, 5000, 5000))
    decodes = FrameDecodes(monkeypatch)
    generous = Limits(max_pages=2000, max_page_pixels=25_000_000, max_document_pixels=10**12)
    inspection = inspect_document(str(source), "image/webp", generous, OPTIONS)
    assert inspection.problem is None
    assert inspection.page_count == 2000
    assert inspection.largest_page_pixels == 25_000_000
    assert 1 <= decodes.count <= max(1, DECODE_CHECK_PIXELS // 25_000_000)


@pytest.mark.parametrize(
    ("name", "media_type", "data", "reason"),
    [
        ("no-width.tiff", "image/tiff", tiff_frame_without_width(), "TypeError"),
        ("lying.pdf", "application/pdf", pdf_with_lying_page_count(2000), "page tree"),
    ],
)
def test_whatever_a_library_raises_is_a_refusal(
    tmp_path: Path, name: str, media_type: str, data: bytes, reason: str
) -> None:
    source = tmp_path / name
    source.write_bytes(data)
    generous = Limits(max_pages=2000, max_page_pixels=25_000_000, max_document_pixels=10**12)
    inspection = inspect_document(str(source), media_type, generous, OPTIONS)
    assert inspection.problem == "unreadable"
    assert reason in inspection.detail


def _photo_jpeg() -> bytes:
    """A 1600x1200 JPEG with detail in every block, as a camera's would have."""
    gradient = Image.linear_gradient("L").resize((1600, 1200))
    photo = Image.merge("RGB", (gradient, gradient.rotate(90, expand=False), gradient))
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.mark.parametrize("kept", [1.0, 0.6, 0.3])
def test_a_jpeg_checked_at_a_smaller_scale_is_still_read_to_its_end(
    tmp_path: Path, kept: float
) -> None:
    """The check decodes a JPEG at 1/8 scale: a whole file passes with its full size, and a
    file cut short is refused as a full decode refuses it."""
    data = _photo_jpeg()
    source = tmp_path / "photo.jpg"
    source.write_bytes(data[: int(len(data) * kept)])
    generous = Limits(max_pages=10, max_page_pixels=25_000_000, max_document_pixels=10**12)
    inspection = inspect_document(str(source), "image/jpeg", generous, OPTIONS)
    if kept == 1.0:
        assert inspection.problem is None
        assert inspection.largest_page_pixels == 1600 * 1200
    else:
        assert inspection.problem == "unreadable"
        assert "truncated" in inspection.detail


@pytest.mark.parametrize(
    ("raised", "problem", "detail"),
    [
        (Image.DecompressionBombError("big"), "page_too_large", "over the limit of 100 pixels"),
        (Image.DecompressionBombWarning("big"), "page_too_large", "over the limit of 100 pixels"),
        (ValueError("truncated"), "unreadable", "the images cannot be merged: ValueError"),
    ],
)
def test_a_failed_merge_names_a_page_too_large_or_an_unreadable_file(
    raised: Exception, problem: str, detail: str
) -> None:
    verdict = merge_refusal(raised, LIMITS, "the images")
    assert verdict.problem == problem
    assert verdict.detail is not None and detail in verdict.detail
