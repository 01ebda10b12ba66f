"""The text-layer quality check (`judge_text_layer`, pure) and the reading of a page's layer
(`read_text_layer`) on PDFs made here and the real samples."""

from __future__ import annotations

import random
from pathlib import Path

import pymupdf
import pytest

from ocr_gateway.rendering.mupdf import RenderOptions
from ocr_gateway.rendering.text_layer import (
    MIN_CHARS,
    judge_text_layer,
    read_text_layer,
    render_pages_reading_text,
)
from tests.support.documents import sample

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst"
    " of times, and the dog did not mind at all, for it was asleep in the sun by the door."
)
GERMAN = (
    "Ein topologischer Raum ist ein Paar aus einer Menge und einer Topologie auf dieser Menge."
    " Die offenen Mengen sind unter Vereinigung und endlichem Schnitt abgeschlossen, und das"
    " ist die ganze Definition, die wir hier brauchen werden."
)
INDEX = (
    "Stichwortverzeichnis Abbildung, 4 Homotopie, 44 Homotopieklasse, 47 Retraktion, 47"
    " Scheitelwinkel, 92 Simplex, 33 Sphäre, 12 Topologie, 2 Überlagerung, 55 Zusammenhang, 11"
    " Metrik, 6 Mannigfaltigkeit, 27 Quotiententopologie, 13 Produkttopologie, 10"
)


# Greek and Latin letters drawn at random: what a font's broken encoding scatters.
MIXED_LETTERS = "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8abcdefgh"


def caesar(text: str, shift: int = 3) -> str:
    def move(c: str) -> str:
        if "a" <= c <= "z":
            return chr((ord(c) - 97 + shift) % 26 + 97)
        if "A" <= c <= "Z":
            return chr((ord(c) - 65 + shift) % 26 + 65)
        return c

    return "".join(move(c) for c in text)


@pytest.mark.parametrize("good", [ENGLISH, GERMAN, INDEX, ENGLISH + "\n1,234.50 17% 2024-01-01"])
def test_real_text_passes(good: str) -> None:
    verdict = judge_text_layer(good)
    assert verdict.passed, verdict.reason


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        ("Page 3", "too little text"),
        ("\ufffd" * 60 + ENGLISH, "unprintable"),
        ("\ue001\ue002\ue003 " * 20 + ENGLISH[:60], "unprintable"),
        ("#%& *@! ?^~ <>[ ]{} |\\/ $+= " * 10, "mostly symbols"),
        (
            " ".join(
                "".join(random.Random(n).choice(MIXED_LETTERS) for _ in range(6)) for n in range(50)
            ),
            "scripts",
        ),
        (ENGLISH.replace(" ", ""), "spaces missing"),
        ("q7x z9k3 w2vj k8z x1q7 " * 12, "word-like"),
        (caesar(ENGLISH), "no known language"),
        (caesar(ENGLISH, 29 - 26), "no known language"),
    ],
)
def test_junk_fails_with_its_reason(junk: str, reason: str) -> None:
    verdict = judge_text_layer(junk)
    assert not verdict.passed
    assert reason in verdict.reason, verdict.reason


def test_a_page_mostly_image_with_a_line_of_text_goes_to_ocr() -> None:
    stamp = "Scanned by the office copier on 2024-05-01, page 3 of 12"
    assert len(stamp.replace(" ", "")) >= MIN_CHARS
    assert judge_text_layer(stamp).passed
    assert not judge_text_layer(stamp, image_cover=0.9).passed
    assert judge_text_layer(ENGLISH * 3, image_cover=0.9).passed


def test_leader_dots_of_a_table_of_contents_are_not_symbols() -> None:
    contents = "\n".join(
        f"{n}.1 Topologische Räume und die Definition . . . . . . . . . . . . . . {n * 3}"
        for n in range(1, 12)
    )
    assert judge_text_layer(contents).passed


def _page_with(doc: pymupdf.Document, text: str, *, invisible: bool, image: bool) -> None:
    page = doc.new_page(width=595, height=842)
    if image:
        page.insert_image(page.rect, filename=str(sample("image.jpg")))
    page.insert_textbox(
        pymupdf.Rect(72, 72, 523, 700), text, fontsize=11, render_mode=3 if invisible else 0
    )


def test_an_ocrmypdf_style_invisible_layer_over_a_scan_is_read() -> None:
    """Invisible text over a page-sized image (what OCRmyPDF writes) counts when it is good."""
    doc = pymupdf.open()
    _page_with(doc, ENGLISH * 3, invisible=True, image=True)
    _page_with(doc, caesar(ENGLISH * 3), invisible=True, image=True)
    found, verdict = read_text_layer(doc[0], 200)
    assert verdict.passed and found is not None
    assert found.invisible
    assert "quick brown fox" in found.text.replace("\n", " ")
    found, verdict = read_text_layer(doc[1], 200)
    assert found is None and "language" in verdict.reason


def test_boxes_are_in_png_pixels_and_follow_a_rotated_page() -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=600, height=800)
    page.insert_text((50, 60), "Rotated words on a page turned sideways for this test", fontsize=20)
    page.insert_text((50, 400), "and a second line further down the very same page", fontsize=20)
    page.set_rotation(90)
    found, verdict = read_text_layer(page, 144)
    assert found is not None, verdict
    pixmap = page.get_pixmap(dpi=144)
    assert (pixmap.width, pixmap.height) == (1600, 1200)
    (first,) = [box for box in found.boxes if box["text"].startswith("Rotated")]
    x0, y0, x1, y1 = first["bbox"]
    # Turned 90° clockwise, the top-left line now runs down the right-hand edge.
    assert x0 > pixmap.width / 2 and y1 - y0 > x1 - x0
    assert first["confidence"] is None


def test_the_samples_take_the_path_their_content_calls_for(tmp_path: Path) -> None:
    options = RenderOptions(dpi=100, grayscale=True, max_page_pixels=50_000_000)
    born = render_pages_reading_text(
        str(sample("pdflatex-4-pages.pdf")), "application/pdf", [1, 2], str(tmp_path), options
    )
    assert sorted(born.text_pages) == [1, 2] and not born.refused
    assert [n for n, _ in born.written] == [1, 2]
    scanned = render_pages_reading_text(
        str(sample("imagemagick-images.pdf")), "application/pdf", [1, 2], str(tmp_path), options
    )
    assert not scanned.text_pages and sorted(scanned.refused) == [1, 2]
    image = render_pages_reading_text(
        str(sample("smile.png")), "image/png", [1], str(tmp_path), options
    )
    assert not image.text_pages and not image.refused
