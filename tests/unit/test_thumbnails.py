"""The thumbnail maker on real image files (every mode Pillow may hand it, EXIF orientation,
never enlarging), and the If-None-Match rule of the cached answers."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from ocr_gateway.api.images import not_modified
from ocr_gateway.thumbnails.making import (
    IMAGE_BOXES,
    displayable,
    fit,
    make_page_thumbnail,
    make_thumbnails,
    strong_etag,
    thumbnail_size,
)

BUDGET = 25_000_000


def _write(tmp_path: Path, image: Image.Image, fmt: str, **params: object) -> Path:
    path = tmp_path / f"original.{fmt.lower()}"
    image.save(path, fmt, **params)
    return path


def _pillow_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    image = Image.new("L", size)
    image.thumbnail(box)
    return image.size


@pytest.mark.parametrize(
    ("size", "fmt"),
    [((4000, 2500), "JPEG"), ((300, 200), "PNG"), ((16, 16), "PNG"), ((1201, 37), "TIFF")],
)
def test_each_box_holds_pillows_own_thumbnail_never_enlarged(
    tmp_path: Path, size: tuple[int, int], fmt: str
) -> None:
    source = _write(tmp_path, Image.new("RGB", size, (200, 30, 30)), fmt)
    made = make_thumbnails(str(source), str(tmp_path), IMAGE_BOXES, 80, BUDGET)
    assert made.problem is None
    assert (made.width, made.height) == size
    assert [thumb.box for thumb in made.thumbnails] == list(IMAGE_BOXES)
    for thumb in made.thumbnails:
        box = IMAGE_BOXES[thumb.box]
        data = (tmp_path / f"{thumb.box}.webp").read_bytes()
        with Image.open(io.BytesIO(data)) as written:
            assert written.format == "WEBP"
            assert written.size == (thumb.width, thumb.height) == _pillow_size(size, box)
        assert thumb.width <= min(box[0], size[0]) and thumb.height <= min(box[1], size[1])
        assert thumb.size_bytes == len(data)
        assert thumb.etag == strong_etag(data)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("1", "L"),
        ("L", "L"),
        ("P", "RGB"),
        ("RGB", "RGB"),
        ("RGBA", "RGBA"),
        ("LA", "RGBA"),
        ("CMYK", "RGB"),
        ("I;16", "L"),
        ("I", "L"),
        ("F", "L"),
    ],
)
def test_every_mode_becomes_one_webp_encodes(mode: str, expected: str) -> None:
    shown = displayable(Image.new(mode, (40, 30)))
    assert shown.mode == expected
    shown.save(io.BytesIO(), "WEBP")


def test_sixteen_bit_grays_are_scaled_not_clipped() -> None:
    image = Image.new("I;16", (4, 4), 32768)
    assert displayable(image).getpixel((0, 0)) == 128


def test_a_palette_with_transparency_keeps_its_alpha() -> None:
    image = Image.new("P", (10, 10), 0)
    image.info["transparency"] = 0
    assert displayable(image).mode == "RGBA"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored landscape with 'rotate 90' in its EXIF is shown portrait."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    source = _write(tmp_path, Image.new("RGB", (400, 200)), "JPEG", exif=exif.tobytes())
    made = make_thumbnails(str(source), str(tmp_path), {"100x100": (100, 100)}, 80, BUDGET)
    assert (made.width, made.height) == (200, 400)
    assert (made.thumbnails[0].width, made.thumbnails[0].height) == (50, 100)


def test_an_image_over_the_pixel_budget_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    source = _write(tmp_path, Image.new("1", (3000, 3000)), "PNG")
    made = make_thumbnails(str(source), str(tmp_path), IMAGE_BOXES, 80, 1_000_000)
    assert made.problem is not None and "DecompressionBomb" in made.problem
    assert not list(tmp_path.glob("*.webp"))


def test_unreadable_bytes_are_a_problem(tmp_path: Path) -> None:
    source = tmp_path / "broken.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    made = make_thumbnails(str(source), str(tmp_path), IMAGE_BOXES, 80, BUDGET)
    assert made.problem is not None and made.problem.startswith("the thumbnails could not")


def test_a_page_thumbnail_is_written_to_its_target(tmp_path: Path) -> None:
    source = _write(tmp_path, Image.new("L", (1654, 2339), 255), "PNG")
    target = tmp_path / "1.thumb-300.webp"
    made = make_page_thumbnail(str(source), str(target), 300, 80)
    assert made.problem is None
    with Image.open(target) as written:
        assert written.size == (212, 300) == _pillow_size((1654, 2339), (300, 300))
    missing = make_page_thumbnail(str(tmp_path / "nope.png"), str(target), 300, 80)
    assert missing.problem is not None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x", "abc"', True),
        ('"x" , W/"abc"', True),
        ('"abcd"', False),
        ("abc", False),
        ("*", True),
    ],
)
def test_if_none_match(header: str | None, expected: bool) -> None:
    assert not_modified(header, '"abc"') is expected


@pytest.mark.parametrize("size", [(4000, 2500), (2500, 4000), (1201, 37), (333, 1000), (99, 101)])
def test_fit_makes_the_very_pixels_of_pillows_thumbnail(size: tuple[int, int]) -> None:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    for box in IMAGE_BOXES.values():
        expected = image.copy()
        expected.thumbnail(box)
        made = fit(image, box)
        assert made.size == expected.size
        assert made.tobytes() == expected.tobytes()
    assert image.size == size, "the original is left as it was"


def test_thumbnail_size_is_pillows_for_any_shape() -> None:
    """Pillow's own arithmetic, on 300 shapes from thin strips to squares, small and large."""
    shapes = random.Random(15)
    for _ in range(300):
        size = (shapes.randint(1, 6000), shapes.randint(1, 6000))
        for box in IMAGE_BOXES.values():
            image = Image.new("1", size)
            image.thumbnail(box)
            expected = None if image.size == size else image.size
            assert thumbnail_size(size, box) == expected, (size, box)
