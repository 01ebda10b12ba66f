"""OCR engines behind one small interface, chosen by `OCR_GATEWAY_OCR_ENGINE`.

- `rapidocr`: RapidOCR 1.4 (`rapidocr-onnxruntime`), PP-OCRv4 on onnxruntime;
- `rapidocr3`: RapidOCR 3 (`rapidocr`), the PP-OCRv6 models its wheel carries;
- `tesseract`: the `tesseract` program through pytesseract (`worker/tesseract.py`);
- `tesserocr`: Tesseract's C API in the process, no program started per page.

Every engine's models ship in a wheel or a Debian package: a worker downloads nothing at run
time, and onnxruntime's telemetry is turned off before anything can import it (`telemetry.py`).
All return line boxes in PNG pixel coordinates, put in reading order by `layout.to_output`.
`build_engine` loads an engine and reads a small page with it, so that its first real page
pays for nothing (RapidOCR 3 loads its models at the first call).
"""

from __future__ import annotations

from ocr_gateway.worker.telemetry import disable_telemetry

disable_telemetry()  # before any engine module can import onnxruntime

import importlib.util  # noqa: E402
import io  # noqa: E402
import shutil  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Protocol  # noqa: E402

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ocr_gateway.worker.layout import Box, OcrOutput, to_output  # noqa: E402
from ocr_gateway.worker.tesseract import (  # noqa: E402
    TESSERACT_LANG,
    TesseractEngine,
    TesserocrEngine,
    tessdata_dir,
)


def __getattr__(name: str) -> Any:
    """`ENGINES`: the names `OCR_GATEWAY_OCR_ENGINE` accepts, defined once by the setting's
    Literal type. Read from the settings module when asked, not at import: an OCR process
    imports this module and has no use for pydantic-settings (0.6 s of its start-up)."""
    if name == "ENGINES":
        from ocr_gateway.core.settings import OCR_ENGINES

        return OCR_ENGINES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# RapidOCR shrinks any image whose longer side exceeds its `max_side_len` (2000 by default)
# before detection and cuts the text lines from the shrunk image, so a 200 DPI A4 page would
# be read at ~170 DPI. The gateway already bounds a page's pixels; read pages as rendered.
RAPIDOCR_MAX_SIDE = 4096
# What `build_engine` reads once, so every model is loaded before the first page.
WARM_UP_TEXT = "Warm up 0123"
WARM_UP_SIDE = 768

__all__ = [
    "TESSERACT_LANG",
    "EngineUnavailable",
    "OcrEngine",
    "RapidOcr3Engine",
    "RapidOcrEngine",
    "TesseractEngine",
    "TesserocrEngine",
    "available_engines",
    "build_engine",
    "check_engine",
    "open_image",
]


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

    # Detection alone and recognition alone (`worker/regions.py`, its `RegionEngine`). The
    # flags are passed on every call: RapidOCR keeps the ones given to its constructor.

    def detect_regions(self, png: bytes) -> DetectedRegions:
        """The page's text boxes, four corners each, without reading them. RapidOCR 1.x does
        not hand out its detector's box scores: each score is None."""
        pixels = _bgr(open_image(png))
        height, width = pixels.shape[:2]
        quads, _elapsed = self._ocr(pixels, use_det=True, use_cls=False, use_rec=False)
        found: list[tuple[list[list[float]], float | None]] = [
            ([[float(x), float(y)] for x, y in quad], None) for quad in quads or []
        ]
        return DetectedRegions(width=width, height=height, boxes=found)

    def recognize_regions(
        self, png: bytes, quads: Sequence[Sequence[Sequence[float]]]
    ) -> list[tuple[str, float]]:
        """The text and confidence of each box, in the order given, without detection: each
        box is cropped by RapidOCR's own perspective crop (`get_crop_img_list`, which turns
        a box standing upright on its side) and read by its recognition model."""
        import numpy as np

        if not quads:
            return []
        pixels = _bgr(open_image(png))
        crops = self._ocr.get_crop_img_list(
            pixels, [np.array(quad, dtype=np.float32) for quad in quads]
        )
        read, _elapsed = self._ocr.text_rec(crops, False)
        return [(str(text), float(score)) for text, score, *_ in read]


@dataclass(frozen=True, slots=True)
class DetectedRegions:
    """What detection alone found: the page image's size, and each box's four corners
    (clockwise from the top left, in its pixels) with the detector's score (None: not given)."""

    width: int
    height: int
    boxes: list[tuple[list[list[float]], float | None]]


def _bgr(image: Image.Image) -> Any:
    """The page as three-channel BGR pixels, which the crops and the recognizer take."""
    import numpy as np

    pixels = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(pixels[:, :, ::-1])


class RapidOcr3Engine:
    """RapidOCR 3 (`rapidocr`) with the PP-OCRv6 small detection and recognition models and
    the 180° line classifier that its wheel carries (`rapidocr/models/`)."""

    name = "rapidocr3"

    def __init__(self, threads: int = 1) -> None:
        from rapidocr import RapidOCR

        # As for RapidOCR 1.4: this process's share of the cores, pages read at full size,
        # the line classifier off (rendered pages are upright).
        self._ocr = RapidOCR(
            params={
                "Global.log_level": "warning",
                "Global.max_side_len": RAPIDOCR_MAX_SIDE,
                "Global.use_cls": False,
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )

    def recognize(self, png: bytes) -> OcrOutput:
        pixels = _pixels(open_image(png))
        result = self._ocr(pixels)
        boxes: list[Box] = []
        quads = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None) or ()
        scores = getattr(result, "scores", None) or ()
        if quads is not None:
            for quad, text, score in zip(quads, texts, scores, strict=False):
                xs = [float(point[0]) for point in quad]
                ys = [float(point[1]) for point in quad]
                boxes.append(Box(min(xs), min(ys), max(xs), max(ys), str(text), float(score)))
        return to_output(boxes)


def _pixels(image: Image.Image) -> Any:
    """The page as the array OpenCV-based engines take: gray, or BGR."""
    import numpy as np

    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = np.ascontiguousarray(pixels[:, :, ::-1])  # RGB → BGR, as OpenCV expects
    return pixels


def warm_up_page() -> bytes:
    """A small PNG with one line of text, at 200 DPI. Square and at least 736 px a side:
    RapidOCR's detector scales an image whose short side is below 736 px up to that (a
    640 x 120 line became 3925 x 736 and took seconds)."""
    image = Image.new("L", (WARM_UP_SIDE, WARM_UP_SIDE), 255)
    font = ImageFont.load_default(size=48)
    ImageDraw.Draw(image).text((20, 30), WARM_UP_TEXT, fill=0, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(200, 200))
    return buffer.getvalue()


# How to install each engine, for the worker's start-up error.
RAPIDOCR_HINT = (
    "pip install 'ocr-gateway[ocr]' and"
    " pip install --no-deps 'rapidocr-onnxruntime>=1.4,<2' 'img2table>=2.0,<3'"
)
RAPIDOCR3_HINT = (
    "pip install 'ocr-gateway[ocr,rapidocr3]' and pip install --no-deps 'rapidocr>=3,<4'"
)
TESSDATA_HINT = "Debian: apt-get install tesseract-ocr-eng tesseract-ocr-osd"


def check_engine(name: str) -> None:
    """Fail early, in the worker's main process, with an install hint."""
    if name == "rapidocr":
        if importlib.util.find_spec("rapidocr_onnxruntime") is None:
            raise EngineUnavailable(f"the rapidocr engine is not installed: {RAPIDOCR_HINT}")
    elif name == "rapidocr3":
        if importlib.util.find_spec("rapidocr") is None:
            raise EngineUnavailable(f"the rapidocr3 engine is not installed: {RAPIDOCR3_HINT}")
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
    elif name == "tesserocr":
        if importlib.util.find_spec("tesserocr") is None:
            raise EngineUnavailable(
                "the tesserocr engine needs tesserocr: pip install 'ocr-gateway[tesserocr]'"
            )
        if tessdata_dir() is None:
            raise EngineUnavailable(
                f"the tesserocr engine needs Tesseract's {TESSERACT_LANG} models ({TESSDATA_HINT})"
            )
    else:
        from ocr_gateway.core.settings import OCR_ENGINES

        raise EngineUnavailable(
            f"unknown OCR engine {name!r}; choose one of {', '.join(OCR_ENGINES)}"
        )


def available_engines() -> list[str]:
    """The engines that `check_engine` accepts on this machine."""
    from ocr_gateway.core.settings import OCR_ENGINES

    found = []
    for name in OCR_ENGINES:
        try:
            check_engine(name)
        except EngineUnavailable:
            continue
        found.append(name)
    return found


def build_engine(name: str, threads: int = 1, *, warm: bool = True) -> OcrEngine:
    """The engine named by the setting; models load here, once per OCR process, and (`warm`)
    a small page is read so that nothing is left to load at the first real page."""
    check_engine(name)
    engine: OcrEngine
    if name == "tesseract":
        engine = TesseractEngine(threads)
    elif name == "tesserocr":
        engine = TesserocrEngine(threads)
    elif name == "rapidocr3":
        engine = RapidOcr3Engine(threads)
    else:
        engine = RapidOcrEngine(threads)
    if warm:
        engine.recognize(warm_up_page())
    return engine
