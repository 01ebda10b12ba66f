"""The bare render loop, the limit of section 1: code that runs in the bench's pool processes.

PyMuPDF is imported the way the service's render workers import it (`rendering.mupdf`), so both
loops load the same library with the same optional parts left out.
"""

from __future__ import annotations

import os
from typing import Any

from ocr_gateway.rendering.mupdf import pymupdf

_DOC: tuple[str, Any] | None = None


def render_chunk(
    source: str, token: str, pages: list[int], out_dir: str, dpi: int, gray: bool
) -> int:
    """The limit: one open Document per process (reopened per run token), pixmap, PNG, write."""
    global _DOC
    if _DOC is None or _DOC[0] != token:
        if _DOC is not None:
            _DOC[1].close()
        _DOC = (token, pymupdf.open(source))
    doc = _DOC[1]
    colorspace = pymupdf.csGRAY if gray else pymupdf.csRGB
    for number in pages:
        pixmap = doc.load_page(number - 1).get_pixmap(dpi=dpi, colorspace=colorspace, alpha=False)
        with open(os.path.join(out_dir, f"{number}.png"), "wb") as handle:
            handle.write(pixmap.tobytes("png"))
    return len(pages)
