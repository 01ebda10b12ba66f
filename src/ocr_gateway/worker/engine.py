"""OCR engines behind one small interface, chosen by `OCR_GATEWAY_OCR_ENGINE`.

`rapidocr` (RapidOCR on onnxruntime) carries its models inside its wheel, so a worker never
downloads anything at run time. `tesseract` drives the `tesseract` program through pytesseract
and is there only where that program is installed. Both return line boxes in PNG pixel
coordinates, put in reading order by `layout.to_output`.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
from typing import Any, Protocol

from PIL import Image

from ocr_gateway.core.settings import OCR_ENGINES
from ocr_gateway.worker.layout import Box, OcrOutput, to_output

# The names `OCR_GATEWAY_OCR_ENGINE` accepts: defined once, by the setting's Literal type.
ENGINES = OCR_ENGINES
TESSERACT_LANG = "eng"
# RapidOCR shrinks any image whose longer side exceeds its `max_side_len` (2000 by default)
# before detection and cuts the text lines from the shrunk image, so a 200 DPI A4 page would
# be read at ~170 DPI. The gateway already bounds a page's pixels; read pages as rendered.
RAPIDOCR_MAX_SIDE = 4096


class EngineUnavailable(Exception):
    """The configured engine is not installed here; the message says how to install it."""


class OcrEngine(Protocol):
    """Anything that turns one page image into text and line boxes."""

    name: str

    def recognize(self, png: bytes) -> OcrOutput: ...


def open_image(data: bytes) -> Image.Image:
    """Decode the page image fully (a broken PNG fails here, with Pillow's message)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


class RapidOcrEngine:
    """RapidOCR (PP-OCR detection, direction and recognition models) on onnxruntime."""

    name = "rapidocr"

    def __init__(self, threads: int = 1) -> None:
        from rapidocr_onnxruntime import RapidOCR

        # One onnxruntime thread pool per process, sized to the cores this process may use,
        # so that several OCR processes do not oversubscribe the machine. The 180° line
        # classifier is off: rendered pages are upright (PyMuPDF applies /Rotate), and it
        # flipped whole Latin lines into garbage (bench-ocr: CER 3.6% → 1.2% at 200 DPI).
        self._ocr = RapidOCR(
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
            max_side_len=RAPIDOCR_MAX_SIDE,
            use_cls=False,
        )

    def recognize(self, png: bytes) -> OcrOutput:
        import numpy as np

        image = open_image(png)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        pixels = np.asarray(image)
        if pixels.ndim == 3:
            pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # RGB → BGR, as OpenCV expects
        result, _elapsed = self._ocr(pixels)
        boxes: list[Box] = []
        for quad, text, score in result or []:
            xs = [float(point[0]) for point in quad]
            ys = [float(point[1]) for point in quad]
            boxes.append(Box(min(xs), min(ys), max(xs), max(ys), str(text), float(score)))
        return to_output(boxes)


class TesseractEngine:
    """Tesseract through pytesseract: words grouped into its own lines, then ordered."""

    name = "tesseract"

    def __init__(self, threads: int = 1, lang: str = TESSERACT_LANG) -> None:
        import pytesseract

        # Tesseract's OpenMP threads; pytesseract runs it as a child that inherits this.
        os.environ["OMP_THREAD_LIMIT"] = str(threads)
        self._tesseract = pytesseract
        self._lang = lang

    def recognize(self, png: bytes) -> OcrOutput:
        image = open_image(png)
        # Tell Tesseract the resolution the PNG records: left to read it from the file, it
        # misreads PyMuPDF's 199.9996 DPI and splits words (CER 0.2% → 67% on a 200 DPI page).
        dpi = image.info.get("dpi")
        config = f"--dpi {round(dpi[0])}" if dpi and dpi[0] >= 1 else ""
        data: dict[str, list[Any]] = self._tesseract.image_to_data(
            image, lang=self._lang, config=config, output_type=self._tesseract.Output.DICT
        )
        lines: dict[tuple[int, int, int], list[int]] = {}
        for index, word in enumerate(data["text"]):
            if str(word).strip():
                key = (data["block_num"][index], data["par_num"][index], data["line_num"][index])
                lines.setdefault(key, []).append(index)
        boxes: list[Box] = []
        for indexes in lines.values():
            x0 = min(int(data["left"][i]) for i in indexes)
            y0 = min(int(data["top"][i]) for i in indexes)
            x1 = max(int(data["left"][i]) + int(data["width"][i]) for i in indexes)
            y1 = max(int(data["top"][i]) + int(data["height"][i]) for i in indexes)
            confidences = [float(data["conf"][i]) for i in indexes if float(data["conf"][i]) >= 0]
            confidence = sum(confidences) / len(confidences) / 100 if confidences else None
            text = " ".join(str(data["text"][i]).strip() for i in indexes)
            boxes.append(Box(x0, y0, x1, y1, text, confidence))
        return to_output(boxes)


def check_engine(name: str) -> None:
    """Fail early, in the worker's main process, with an install hint."""
    if name == "rapidocr":
        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise EngineUnavailable(
                "the rapidocr engine is not installed: pip install 'ocr-gateway[ocr]' and"
                " pip install --no-deps 'rapidocr-onnxruntime>=1.4,<2' 'img2table>=2.0,<3'"
            )
    elif name == "tesseract":
        if importlib.util.find_spec("pytesseract") is None:
            raise EngineUnavailable(
                "the tesseract engine needs pytesseract: pip install 'ocr-gateway[tesseract]'"
            )
        if shutil.which("tesseract") is None:
            raise EngineUnavailable(
                "the tesseract engine needs the tesseract program on PATH "
                "(Debian: apt-get install tesseract-ocr)"
            )
    else:
        raise EngineUnavailable(f"unknown OCR engine {name!r}; choose one of {', '.join(ENGINES)}")


def available_engines() -> list[str]:
    """The engines that `check_engine` accepts on this machine."""
    found = []
    for name in ENGINES:
        try:
            check_engine(name)
        except EngineUnavailable:
            continue
        found.append(name)
    return found


def build_engine(name: str, threads: int = 1) -> OcrEngine:
    """The engine named by the setting; models load here, once per OCR process."""
    check_engine(name)
    if name == "tesseract":
        return TesseractEngine(threads)
    return RapidOcrEngine(threads)
