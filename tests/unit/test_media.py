"""Magic-byte sniffing: every media type the gateway takes, and junk that only looks close."""

from __future__ import annotations

import pytest

from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, SNIFF_BYTES, MediaType, sniff
from tests.support.documents import sample


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", MediaType.PDF),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", MediaType.PNG),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", MediaType.JPEG),
        (b"\xff\xd8\xff\xdb", MediaType.JPEG),
        (b"II*\x00\x08\x00\x00\x00", MediaType.TIFF),
        (b"MM\x00*\x00\x00\x00\x08", MediaType.TIFF),
        (b"II+\x00\x08\x00\x00\x00", MediaType.TIFF),  # BigTIFF
        (b"MM\x00+\x00\x08\x00\x00", MediaType.TIFF),
        (b"BM" + b"\x00" * 24, MediaType.BMP),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", MediaType.WEBP),
        # PDF readers accept junk before the header, within the first KiB.
        (b"\x00" * 500 + b"%PDF-1.4", MediaType.PDF),
        (b" " * (SNIFF_BYTES - 8) + b"%PDF-1.", MediaType.PDF),
    ],
)
def test_sniff_recognises_each_type(head: bytes, expected: MediaType) -> None:
    assert sniff(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, world",
        b"<html><body>%PD F-1.4",
        b"%PDF",  # no dash, no version
        b"\x89PNG\r\n",  # truncated signature
        b"\x89PNG\n\r\x1a\n",  # line endings mangled by a text-mode transfer
        b"\xff\xd8",  # two bytes of JPEG only
        b"II*",
        b"MM*\x00",
        b"BM" + b"\x00" * 10,  # too short for a BMP header
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"RIFF",
        b"PK\x03\x04" + b"\x00" * 30,  # a zip (docx, xlsx)
        b"GIF89a\x01\x00\x01\x00",
        b"\x00" * SNIFF_BYTES + b"%PDF-1.4",  # header beyond the first KiB
    ],
)
def test_sniff_refuses_junk(head: bytes) -> None:
    assert sniff(head) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pdflatex-4-pages.pdf", MediaType.PDF),
        ("GeoTopo-komprimiert.pdf", MediaType.PDF),
        ("smile.png", MediaType.PNG),
        ("smile.jpg", MediaType.JPEG),
        ("image.jpg", MediaType.JPEG),
        ("smile.tiff", MediaType.TIFF),
    ],
)
def test_sniff_recognises_the_sample_files(name: str, expected: MediaType) -> None:
    with sample(name).open("rb") as handle:
        assert sniff(handle.read(SNIFF_BYTES)) == expected


def test_images_and_pdfs_are_separate_sets_covering_every_type() -> None:
    assert not PDF_TYPES & IMAGE_TYPES
    assert set(MediaType) == PDF_TYPES | IMAGE_TYPES
