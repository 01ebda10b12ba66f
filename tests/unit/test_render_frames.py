"""Rendering an animation decodes each frame once, and library errors cross as plain text."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ocr_gateway.core.errors import describe
from ocr_gateway.rendering.mupdf import RenderOptions
from ocr_gateway.rendering.pages import RenderFailure, render_pages
from tests.support.hostile import FrameDecodes, animated_webp, pdf_with_nested_arrays

OPTIONS = RenderOptions(dpi=72, grayscale=True, max_page_pixels=25_000_000)


def test_frames_rendered_one_chunk_at_a_time_are_each_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding frame n of an animated WebP means decoding the frames before it; rendering 20
    frames in 20 chunks must not start from the first frame each time (210 decodes)."""
    source = tmp_path / "animation.webp"
    source.write_bytes(animated_webp(20, 64, 64))
    decodes = FrameDecodes(monkeypatch)
    out = tmp_path / "pages"
    out.mkdir()
    for frame in range(1, 21):
        written = render_pages(str(source), "image/webp", [frame], str(out), OPTIONS)
        assert written == [(frame, str(out / f"{frame}.png"))]
    assert decodes.count == 20


def test_a_library_error_becomes_a_render_failure_that_pickles(tmp_path: Path) -> None:
    source = tmp_path / "nested.pdf"
    source.write_bytes(pdf_with_nested_arrays())
    out = tmp_path / "pages"
    out.mkdir()
    with pytest.raises(RenderFailure) as raised:
        render_pages(str(source), "application/pdf", [1], str(out), OPTIONS)
    assert "stack overflow" in str(raised.value)
    assert str(pickle.loads(pickle.dumps(raised.value))) == str(raised.value)
    assert list(out.iterdir()) == []


def test_describe_names_the_type_and_bounds_the_text() -> None:
    assert describe(ValueError("bad frame")) == "ValueError: bad frame"
    assert describe(KeyError()) == "KeyError"
    long = describe(RuntimeError("x" * 1000), limit=50)
    assert len(long) == 50 and long.startswith("RuntimeError: xxx") and long.endswith("…")
