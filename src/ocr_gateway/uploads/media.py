"""Media types the gateway takes, recognised by magic bytes, never by name or Content-Type."""

from __future__ import annotations

import enum


class MediaType(enum.StrEnum):
    PDF = "application/pdf"
    PNG = "image/png"
    JPEG = "image/jpeg"
    TIFF = "image/tiff"
    BMP = "image/bmp"
    WEBP = "image/webp"


PDF_TYPES = frozenset({MediaType.PDF})
IMAGE_TYPES = frozenset(
    {MediaType.PNG, MediaType.JPEG, MediaType.TIFF, MediaType.BMP, MediaType.WEBP}
)

# How many leading bytes `sniff` needs; PDF readers accept a header anywhere in the first 1 KiB.
SNIFF_BYTES = 1024


def sniff(head: bytes) -> MediaType | None:
    """The media type that the file's first bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaType.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return MediaType.JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return MediaType.TIFF
    if head.startswith(b"BM") and len(head) >= 26:
        return MediaType.BMP
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaType.WEBP
    if b"%PDF-" in head[:SNIFF_BYTES]:
        return MediaType.PDF
    return None
