"""The export formats without a service: arithmetic, joining, and the pdf and zip builders."""

from __future__ import annotations

import uuid
import zipfile
from pathlib import Path

import orjson
import pymupdf
import pytest

from ocr_gateway.exports import builders
from ocr_gateway.exports.formats import (
    JSON_TAIL,
    ExportFormat,
    box_points,
    export_key,
    export_name,
    json_head,
    json_pages,
    page_entry,
    place_words,
    png_size,
    txt_pages,
)


def test_box_pixels_become_points_at_the_render_dpi() -> None:
    polygon = [(144.0, 72.0), (432.0, 72.0), (432.0, 144.0), (144.0, 144.0)]
    assert box_points(polygon, 144) == (72.0, 36.0, 216.0, 72.0)
    assert box_points([[0, 0], [300, 0], [300, 100], [0, 100]], 300) == (0, 0, 72.0, 24.0)


def test_words_fill_their_box() -> None:
    placement = place_words((10, 20, 110, 40), natural_width=4.0, ascender=1.0, descender=-0.25)
    assert placement is not None
    assert placement.fontsize == pytest.approx(16.0)  # 20 pt tall over 1.25 em
    assert placement.baseline == pytest.approx(36.0)  # the descender's 4 pt above the bottom
    assert placement.x == 10
    # 4 em wide at 16 pt is 64 pt; stretched to the box's 100 pt.
    assert placement.stretch == pytest.approx(100 / 64)
    assert place_words((10, 20, 10, 40), 4.0, 1.0, -0.25) is None
    assert place_words((10, 20, 110, 40), 0.0, 1.0, -0.25) is None


def test_txt_batches_join_with_one_form_feed_between_pages() -> None:
    joined = txt_pages(["a", None], first=True) + txt_pages(["c"], first=False)
    assert joined == "a\f\fc"
    assert txt_pages([], first=False) == ""


def test_json_batches_make_one_document() -> None:
    job_id = uuid.uuid4()
    pages = [page_entry(n, "done", f"t{n}", None) for n in range(1, 4)]
    body = (
        json_head(job_id)
        + json_pages(pages[:2], first=True)
        + json_pages([], first=False)
        + json_pages(pages[2:], first=False)
        + JSON_TAIL
    )
    document = orjson.loads(body)
    assert document["job_id"] == str(job_id)
    assert [page["page_number"] for page in document["pages"]] == [1, 2, 3]


def test_page_entry_shows_boxes_as_polygons() -> None:
    entry = page_entry(2, "done", "hi", [{"bbox": [1, 2, 3, 4], "text": "hi", "confidence": 0.5}])
    assert entry["boxes"] == [
        {"text": "hi", "confidence": 0.5, "polygon": [(1, 2), (3, 2), (3, 4), (1, 4)]}
    ]


def test_export_names_tell_final_from_partial_and_change_with_the_job() -> None:
    key = export_key("completed", 1.5, 4, 4, 0)
    assert key == export_key("completed", 1.5, 4, 4, 0)
    assert key != export_key("completed", 1.6, 4, 4, 0)
    assert export_name(ExportFormat.PDF, key, final=True) == f"result-{key}.pdf"
    assert export_name(ExportFormat.ZIP, key, final=False) == f"partial-{key}.zip"


def test_png_size_reads_the_header() -> None:
    pixmap = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 30, 20), False)
    assert png_size(pixmap.tobytes("png")[:24]) == (30, 20)
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(18))


def _job(folder: Path, pages: int, dpi: int) -> Path:
    """A job folder of blank PNGs (A7 at `dpi`) with one line of words each, and its manifest."""
    entries = []
    for number in range(1, pages + 1):
        pixmap = pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 300, 400), False)
        pixmap.clear_with(255)
        pixmap.save(folder / f"{number}.png")
        boxes = [{"bbox": [30, 60, 270, 90], "text": f"word{number} here", "confidence": 1.0}]
        entries.append(page_entry(number, "done", f"word{number} here", boxes))
    manifest = folder / ".manifest.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps(entry) + b"\n" for entry in entries))
    return manifest


def _pngs(folder: Path, pages: int) -> dict[int, str]:
    """The PNGs of `_job`, by page number, as the export service lends them to a builder."""
    return {number: str(folder / f"{number}.png") for number in range(1, pages + 1)}


def test_pdf_builder_leaves_out_a_page_without_its_png(tmp_path: Path) -> None:
    manifest = _job(tmp_path, 3, dpi=100)
    pngs = _pngs(tmp_path, 3)
    del pngs[2]  # deleted while the export was built
    target = tmp_path / "result-k.pdf"
    assert builders.build_pdf(str(manifest), pngs, 100, str(target)) == 2
    with pymupdf.open(target) as pdf:
        assert [page.get_text().strip() for page in pdf] == ["word1 here", "word3 here"]


def test_pdf_builder_places_the_words(tmp_path: Path) -> None:
    manifest = _job(tmp_path, 5, dpi=100)
    target = tmp_path / "result-k.pdf"
    assert builders.build_pdf(str(manifest), _pngs(tmp_path, 5), 100, str(target)) == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".png") == [
        ".manifest.jsonl",
        "result-k.pdf",
    ]
    with pymupdf.open(target) as pdf:
        assert len(pdf) == 5
        page = pdf[4]
        assert page.rect == pymupdf.Rect(0, 0, 216, 288)  # 300x400 px at 100 dpi
        assert page.get_text().strip() == "word5 here"
        (found,) = page.search_for("word5 here")
        assert found.x0 == pytest.approx(21.6, abs=0.5)
        assert found.x1 == pytest.approx(194.4, abs=0.5)
        assert found.y0 == pytest.approx(43.2, abs=1)
        assert found.y1 == pytest.approx(64.8, abs=1)


def test_zip_builder_lists_pages_then_the_json(tmp_path: Path) -> None:
    manifest = _job(tmp_path, 2, dpi=100)
    target = tmp_path / "result-k.zip"
    job_id = str(uuid.uuid4())
    assert builders.build_zip(str(manifest), _pngs(tmp_path, 2), job_id, str(target)) == 2
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == [
            "pages/0001.png",
            "pages/0001.txt",
            "pages/0002.png",
            "pages/0002.txt",
            "result.json",
        ]
        assert archive.read("pages/0002.txt") == b"word2 here"
        document = orjson.loads(archive.read("result.json"))
    assert document["job_id"] == job_id
    assert [page["text"] for page in document["pages"]] == ["word1 here", "word2 here"]
