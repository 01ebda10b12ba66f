"""Hostile files, made in the test: tiny uploads that claim enormous or impossible contents."""

from __future__ import annotations

import io
import struct

import pymupdf
import pytest
from PIL import Image, WebPImagePlugin

TIFF_IMAGE_WIDTH = 256
TIFF_UNKNOWN_TAG = 65000


def _riff_chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _lossless_pixel() -> bytes:
    """The VP8L chunk of a 1x1 lossless WebP, as Pillow writes it."""
    buffer = io.BytesIO()
    Image.new("RGBA", (1, 1), (0, 0, 0, 255)).save(buffer, "WEBP", lossless=True)
    data, position = buffer.getvalue(), 12
    while position < len(data):
        tag = data[position : position + 4]
        size = struct.unpack("<I", data[position + 4 : position + 8])[0]
        end = position + 8 + size + (size & 1)
        if tag == b"VP8L":
            return data[position:end]
        position = end
    raise AssertionError("Pillow wrote no VP8L chunk")


def animated_webp(frames: int, width: int, height: int) -> bytes:
    """An animated WebP of `frames` frames on a `width` x `height` canvas, each frame one pixel:
    a few dozen bytes a frame, while decoding each one paints the whole canvas."""
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = bytes([0x02 | 0x10, 0, 0, 0]) + canvas  # animation and alpha flags
    frame = _riff_chunk(
        b"ANMF",
        bytes(6) + bytes(6) + (100).to_bytes(3, "little") + b"\x00" + _lossless_pixel(),
    )
    body = b"WEBP" + _riff_chunk(b"VP8X", vp8x) + _riff_chunk(b"ANIM", bytes(6)) + frame * frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_frame_without_width() -> bytes:
    """A 2-frame TIFF whose second directory has no ImageWidth tag (renamed to an unknown tag),
    on which Pillow raises `TypeError`, not a decoder error."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(
        buffer, "TIFF", save_all=True, append_images=[Image.new("L", (8, 8), 255)]
    )
    data = bytearray(buffer.getvalue())
    assert data[:2] == b"II", "Pillow writes little-endian TIFFs"
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    second = struct.unpack_from("<I", data, first + 2 + 12 * entries)[0]
    count = struct.unpack_from("<H", data, second)[0]
    for index in range(count):
        entry = second + 2 + 12 * index
        if struct.unpack_from("<H", data, entry)[0] == TIFF_IMAGE_WIDTH:
            struct.pack_into("<H", data, entry, TIFF_UNKNOWN_TAG)
            return bytes(data)
    raise AssertionError("the second frame has no ImageWidth to remove")


def pdf_with_lying_page_count(claimed: int) -> bytes:
    """A 1-page PDF whose page tree claims `/Count <claimed>`."""
    doc = pymupdf.open()
    doc.new_page()
    data: bytes = doc.tobytes()
    doc.close()
    assert b"/Count 1" in data
    return data.replace(b"/Count 1", b"/Count %d" % claimed, 1)


def pdf_with_nested_arrays(depth: int = 100_000) -> bytes:
    """A 1-page PDF whose content stream opens `depth` nested arrays: MuPDF stops with its own
    `exception stack overflow` when it draws the page."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "nested")
    xref = page.get_contents()[0]
    doc.update_stream(xref, b"[" * depth + b"]" * depth + b" pop")
    data: bytes = doc.tobytes()
    doc.close()
    return data


class FrameDecodes:
    """Counts the animated WebP frames Pillow decodes, by wrapping its decoder step (the real
    step still runs): decoding frame n of an animation decodes every frame before it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real_get_next = WebPImagePlugin.WebPImageFile._get_next

        def counting_get_next(image: WebPImagePlugin.WebPImageFile) -> object:
            self.count += 1
            return real_get_next(image)

        monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "_get_next", counting_get_next)
