"""Text layer first: a born-digital PDF page is read from its own text, not OCR'd.

Run in the render pool, next to the page's rasterisation (`render_pages_reading_text`). Each page
of a job with `text_layer=auto` has its text layer read with PyMuPDF and judged by
`judge_text_layer`, a pure function; a page that passes is stored `done` with
`source: "text_layer"` and never published, every other page goes to OCR as usual.

The quality check wants, on the whole page:
- at least `MIN_CHARS` visible-or-invisible non-space characters;
- at least `MIN_PRINTABLE` of them printable (no U+FFFD, private-use or control characters,
  which is what a font without a usable ToUnicode map yields);
- at least `MIN_ALNUM` of them letters or digits, and the letters mostly of one script
  (`MIN_SCRIPT_SHARE`): a broken encoding scatters letters over Greek, Coptic and symbols;
- words that look like words: few over-long tokens (text with lost spaces), few tokens mixing
  letters with digits or symbols (`MIN_WORDLIKE`);
- for Latin-script pages of at least `LANGUAGE_MIN_WORDS` words, a plausible language: enough
  of its words are common words of English, German, French, Spanish, Italian, Dutch,
  Portuguese or Latin (`MIN_COMMON_WORDS`), or, for lists and indexes that have few of those,
  nearly all its words are spelt like words (a vowel, one casing: `MIN_PLAUSIBLE`). A
  Caesar-shifted or mis-mapped layer ("Wkh txlfn eurzq") has neither;
- not a page that is mostly an image with little text on it (`IMAGE_COVER`, `IMAGE_PAGE_CHARS`):
  a scan with a stamped line of text keeps its content in the image.

Invisible text (render mode 3: what OCRmyPDF and scanners lay over a scanned image) counts,
judged by the same checks: it is an earlier OCR of the same page, and reading it is the "no
double work" users of OCRmyPDF expect; an invisible layer of junk fails the checks like any
other junk. `TextLayerPage.invisible` says which it was.

Boxes are line boxes in the rendered PNG's pixels (`{"bbox", "text", "confidence": None}`), put
in reading order by the worker's own `layout.to_output`, so that a page read here has exactly
the shape of a page a worker recognised.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from ocr_gateway.rendering.mupdf import RenderOptions, pymupdf
from ocr_gateway.rendering.pages import RenderFailure, pdf_document, render_pages
from ocr_gateway.uploads.media import MediaType
from ocr_gateway.worker.layout import Box, to_output

MIN_CHARS = 40
MIN_PRINTABLE = 0.97
MIN_ALNUM = 0.6
MIN_SCRIPT_SHARE = 0.85
MIN_WORDLIKE = 0.7
LONG_TOKEN_CHARS = 30
MAX_LONG_TOKEN_SHARE = 0.2
LANGUAGE_MIN_WORDS = 20
MIN_COMMON_WORDS = 0.08
MIN_PLAUSIBLE = 0.9
IMAGE_COVER = 0.5
IMAGE_PAGE_CHARS = 200

COMMON_WORDS = {
    "en": "the of and to in is a that for it on with as are be this by from or at an not was "
    "we which can have has were their its",
    "de": "der die das und in den von zu mit sich des auf für ist im dem nicht ein eine als "
    "auch es an werden aus er hat dass sie nach wird bei einer um am sind noch wie einem "
    "über so zum oder wir",
    "fr": "le la les de des et en du un une est que qui dans pour pas sur au par ce il "
    "avec se sont",
    "es": "el la de que y en los del se las por un para con no una es al lo como",
    "it": "il di che e la per un in è del della non una sono le si con da",
    "nl": "de het een van en in is dat op te zijn met voor niet aan er",
    "pt": "o a de que e do da em um para com não os uma no na se por",
    "la": "et in ut ac sed non est cum ad id eu nec quis at vel per",
}
_VOWELS = frozenset("aeiouyäöüàáâãåæèéêëìíîïòóôõøùúûýœ")
# Tokens of leader dots or rules only (". . . .", "____"): a table of contents' fill.
_LEADERS = re.compile("^[.\u00b7\u2026_\\-\u2013\u2014]+$")
_COMMON = {lang: frozenset(words.split()) for lang, words in COMMON_WORDS.items()}
_TOKEN_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_WORD = re.compile("^[^\\W\\d_]+(?:['\u2019\\-][^\\W\\d_]+)*$")
_NUMBER = re.compile("^[\\d.,:/%+\\-\u2013]+$")
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cn", "Cs"})


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a page's text layer is good enough to skip OCR, and if not, why."""

    passed: bool
    reason: str


@dataclass(slots=True)
class TextLayerPage:
    """A page read from its text layer: what is stored on its row, as a worker's result is.

    Extend it with more values read at render time (a `/convert/batch` page's `tables`) and
    add them to `columns`; `rendering.repository.record_rendered_pages` stores `columns()`.
    """

    text: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    invisible: bool = False
    # The page's tables (`tables.model.Table` as JSON), when its job asked for them.
    tables: list[dict[str, Any]] | None = None

    def columns(self) -> dict[str, Any]:
        """The page row's values (besides status and source) for this page."""
        values: dict[str, Any] = {"text": self.text, "boxes": self.boxes}
        if self.tables is not None:
            values["tables"] = self.tables
        return values


@dataclass(slots=True)
class RenderedChunk:
    """A render chunk's PNGs, and the pages of it read from their text layer."""

    written: list[tuple[int, str]]
    text_pages: dict[int, TextLayerPage] = field(default_factory=dict)
    # Why each other page went to OCR (for logs and the benchmark).
    refused: dict[int, str] = field(default_factory=dict)


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def judge_text_layer(text: str, *, image_cover: float = 0.0) -> Verdict:
    """Judge a page's text layer (its whole text; `image_cover`: the share of the page's area
    under images). Pure: unit-tested on its own (tests/unit/test_text_layer.py)."""
    chars = [c for token in text.split() if not _LEADERS.match(token) for c in token]
    if len(chars) < MIN_CHARS:
        return Verdict(False, f"too little text ({len(chars)} characters)")
    if image_cover >= IMAGE_COVER and len(chars) < IMAGE_PAGE_CHARS:
        return Verdict(False, f"an image page with little text ({len(chars)} characters)")
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in _BAD_CATEGORIES)
    if 1 - bad / len(chars) < MIN_PRINTABLE:
        return Verdict(False, f"unprintable characters ({bad} of {len(chars)})")
    letters = [c for c in chars if c.isalpha()]
    alnum = len(letters) + sum(1 for c in chars if c.isdigit())
    if alnum / len(chars) < MIN_ALNUM:
        return Verdict(False, f"mostly symbols ({alnum} letters or digits of {len(chars)})")
    scripts: dict[str, int] = {}
    for c in letters:
        script = _script(c)
        scripts[script] = scripts.get(script, 0) + 1
    main_script, main_count = max(scripts.items(), key=lambda kv: kv[1], default=("", 0))
    if letters and main_count / len(letters) < MIN_SCRIPT_SHARE:
        return Verdict(False, f"letters of mixed scripts ({len(scripts)} scripts)")
    tokens = text.split()
    long_chars = sum(len(t) for t in tokens if len(t) > LONG_TOKEN_CHARS)
    if long_chars / len(chars) > MAX_LONG_TOKEN_SHARE:
        return Verdict(False, "words run together (spaces missing)")
    cores = [_TOKEN_EDGES.sub("", t) for t in tokens]
    judged = [c for c in cores if c and not _NUMBER.match(c)]
    words = [c for c in judged if _WORD.match(c)]
    if judged and len(words) / len(judged) < MIN_WORDLIKE:
        return Verdict(False, f"few word-like tokens ({len(words)} of {len(judged)})")
    if main_script == "LATIN" and len(words) >= LANGUAGE_MIN_WORDS:
        lowered = [w.lower() for w in words]
        best = max(sum(1 for w in lowered if w in common) for common in _COMMON.values())
        plausible = sum(1 for w in words if _spelt_like_a_word(w))
        if best / len(lowered) < MIN_COMMON_WORDS and plausible / len(words) < MIN_PLAUSIBLE:
            return Verdict(
                False,
                f"no known language ({best} common words, {plausible} plausible of {len(words)})",
            )
    return Verdict(True, "ok")


def _spelt_like_a_word(word: str) -> bool:
    """Has a vowel and one casing (lower, Title or UPPER): "Homotopie" yes, "eurzq", "kRt" no."""
    lowered = word.lower()
    if not any(c in _VOWELS for c in lowered):
        return False
    return word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower())


def _image_cover(page: pymupdf.Page) -> float:
    """The share of the page's area under images (overlaps counted once per image)."""
    area = float(abs(page.rect))
    if area <= 0:
        return 0.0
    covered = 0.0
    for info in page.get_image_info():
        rect = pymupdf.Rect(info["bbox"]) & page.rect
        if not rect.is_empty:
            covered += float(abs(rect))
    return min(1.0, covered / float(area))


def read_text_layer(page: pymupdf.Page, dpi: int) -> tuple[TextLayerPage | None, Verdict]:
    """The page's text layer as line boxes in the PNG's pixels at `dpi`, if it passes."""
    scale = pymupdf.Matrix(dpi / 72.0, dpi / 72.0)
    to_pixels = page.rotation_matrix * scale
    boxes: list[Box] = []
    invisible = 0
    visible = 0
    flags = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
    for block in page.get_text("dict", flags=flags)["blocks"]:
        for line in block.get("lines", ()):
            spans = line.get("spans", ())
            text = "".join(span["text"] for span in spans).strip()
            if not text:
                continue
            hidden = sum(len(s["text"]) for s in spans if s.get("alpha", 255) == 0)
            invisible += hidden
            visible += len(text) - hidden
            rect = pymupdf.Rect(line["bbox"]) * to_pixels
            boxes.append(Box(rect.x0, rect.y0, rect.x1, rect.y1, " ".join(text.split())))
    output = to_output(boxes)
    verdict = judge_text_layer(output.text, image_cover=_image_cover(page))
    if not verdict.passed:
        return None, verdict
    return TextLayerPage(output.text, output.boxes, invisible=invisible > visible), verdict


def read_tables(page: pymupdf.Page, dpi: int) -> list[dict[str, Any]]:
    """The page's tables from its text layer, as `pages.tables` stores them. Imported here,
    not with the module: the table finder (img2table, OpenCV) loads only in a render process
    that reads tables."""
    from ocr_gateway.tables.text_layer import tables_from_text_layer

    return [table.model_dump(mode="json") for table in tables_from_text_layer(page, dpi)]


def render_pages_reading_text(
    source: str,
    media_type: str,
    page_numbers: list[int],
    out_dir: str,
    options: RenderOptions,
    tables: bool = False,
) -> RenderedChunk:
    """`render_pages`, then each PDF page's text layer read and judged (for `text_layer=auto`),
    and, with `tables` (a `/convert/batch` job), the tables of each page that passed read from
    it too (`tables.text_layer.tables_from_text_layer`).

    A page whose text layer (or, with `tables`, whose tables) cannot be read (a library
    error) goes to OCR: reading it is an optimisation, never a reason to fail the job.
    """
    chunk = RenderedChunk(render_pages(source, media_type, page_numbers, out_dir, options))
    if media_type != MediaType.PDF:
        return chunk
    for number, _ in chunk.written:
        try:
            page = pdf_document(source).load_page(number - 1)
            found, verdict = read_text_layer(page, options.dpi)
            if found is not None and tables:
                found.tables = read_tables(page, options.dpi)
        except RenderFailure:
            raise
        except Exception as exc:  # the library's error: this page goes to OCR
            chunk.refused[number] = f"unreadable text layer: {type(exc).__name__}"
            continue
        if found is None:
            chunk.refused[number] = verdict.reason
        else:
            chunk.text_pages[number] = found
    return chunk
