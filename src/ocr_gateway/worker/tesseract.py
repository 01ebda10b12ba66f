"""The Tesseract engines: `tesseract` (the program, via pytesseract) and `tesserocr` (its C API).

Both run Tesseract's LSTM recogniser alone (`--oem 1`) with page segmentation mode
`TESSERACT_PSM` (measured in `make bench-ocr`, docs/worker.md), report Tesseract's own text
lines, and turn a page that lies on its side or upside down upright first: a page whose lines
read with a low mean confidence (or none, or mostly run up or down the page) gets Tesseract's
orientation detection (OSD, Debian's
`tesseract-ocr-osd`), and is read again turned upright when OSD is sure of a turn; the boxes are
mapped back to the pixels of the PNG received. An upright page pays nothing for this.

`tesserocr` loads the models once per OCR process and reads a page without starting a program
or writing a file; its wheel carries its own libtesseract (single-threaded), and reads the
English and OSD models of Debian's `tesseract-ocr-eng` and `tesseract-ocr-osd`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PIL import Image

from ocr_gateway.worker.layout import Box, OcrOutput, to_output

if TYPE_CHECKING:
    from ocr_gateway.worker.engine import DetectedRegions

TESSERACT_LANG = "eng"
# Page segmentation mode 3: fully automatic, without OSD (bench-ocr measured 3, 4, 6 and 11).
TESSERACT_PSM = 3
# Below this mean line confidence (0..1) a page may be turned: upright text reads at 0.9+.
ORIENTATION_CHECK_BELOW = 0.6
# OSD's orientation confidence needed before a page is read turned (Tesseract's usual bar).
ORIENTATION_MIN_CONFIDENCE = 2.0
# The turned read is kept unless its mean confidence is this much below the first read's:
# Tesseract reads some lines of a page on its side as vertical lines, at a fair confidence,
# but in an order no reader wants.
ORIENTATION_MARGIN = 0.1
# The turns OSD reports (degrees counter-clockwise of the text), and the transpose that
# makes such a page upright.
UPRIGHT = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}
# The margin of page read around a box given to `recognize_regions`.
REGION_MARGIN_PX = 4
REGION_MARGIN_LINES = 0.3
TESSDATA_GLOBS = ("/usr/share/tesseract-ocr/*/tessdata", "/usr/share/tessdata")


def tessdata_dir(lang: str = TESSERACT_LANG) -> str | None:
    """Where the models are: TESSDATA_PREFIX, else Debian's folder holding `<lang>.traineddata`."""
    candidates = [os.environ["TESSDATA_PREFIX"]] if os.environ.get("TESSDATA_PREFIX") else []
    for pattern in TESSDATA_GLOBS:
        candidates += sorted(glob.glob(pattern), reverse=True)
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, f"{lang}.traineddata")):
            return folder
    return None


def page_dpi(image: Image.Image) -> int | None:
    """The resolution the PNG records. Tesseract must be told it: left to read it from the
    file, it misreads PyMuPDF's 199.9996 DPI and splits words (CER 0.2% → 67% at 200 DPI)."""
    dpi = image.info.get("dpi")
    return round(dpi[0]) if dpi and dpi[0] >= 1 else None


def mean_confidence(boxes: list[Box]) -> float:
    """The page's mean line confidence (0 for a page without text)."""
    known = [box.confidence for box in boxes if box.confidence is not None]
    return sum(known) / len(known) if known else 0.0


def mostly_vertical(boxes: list[Box]) -> bool:
    """Most lines are taller than wide: the text runs up or down the page, not across."""
    return sum(box.height > box.width for box in boxes) * 2 > len(boxes)


def unturn_bbox(bbox: list[float], turn: int, width: int, height: int) -> list[float]:
    """A box in the pixels of the page made upright (`UPRIGHT[turn]`) → the same box in the
    pixels of the page as received (`width` by `height`)."""
    u0, v0, u1, v1 = bbox
    if turn == 180:
        x0, y0, x1, y1 = width - u1, height - v1, width - u0, height - v0
    elif turn == 90:  # upright = received turned 90° counter-clockwise: (x, y) → (y, W - x)
        x0, y0, x1, y1 = width - v1, u0, width - v0, u1
    elif turn == 270:  # turned 90° clockwise: (x, y) → (H - y, x)
        x0, y0, x1, y1 = v0, height - u1, v1, height - u0
    else:
        return bbox
    return [round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1)]


class TesseractLines:
    """What both Tesseract engines share: read lines, and turn a page upright when needed."""

    name: str

    def read_lines(self, image: Image.Image, dpi: int | None) -> list[Box]:
        raise NotImplementedError

    def orientation(self, image: Image.Image, dpi: int | None) -> int:
        """OSD's turn of the text (0, 90, 180, 270 counter-clockwise); 0 if unsure."""
        raise NotImplementedError

    def recognize(self, png: bytes) -> OcrOutput:
        from ocr_gateway.worker.engine import open_image

        image = open_image(png)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        dpi = page_dpi(image)
        boxes = self.read_lines(image, dpi)
        if mean_confidence(boxes) >= ORIENTATION_CHECK_BELOW and not mostly_vertical(boxes):
            return to_output(boxes)
        turn = self.orientation(image, dpi)
        if turn not in UPRIGHT:
            return to_output(boxes)
        turned = self.read_lines(image.transpose(UPRIGHT[turn]), dpi)
        if mean_confidence(turned) + ORIENTATION_MARGIN < mean_confidence(boxes):
            return to_output(boxes)
        output = to_output(turned)
        width, height = image.size
        return replace(
            output,
            boxes=[
                {**box, "bbox": unturn_bbox(box["bbox"], turn, width, height)}
                for box in output.boxes
            ],
        )


class TesseractEngine(TesseractLines):
    """The `tesseract` program through pytesseract: words grouped into its own lines."""

    name = "tesseract"

    def __init__(
        self, threads: int = 1, lang: str = TESSERACT_LANG, psm: int = TESSERACT_PSM
    ) -> None:
        import pytesseract

        # Tesseract's OpenMP threads; pytesseract runs it as a child that inherits this.
        os.environ["OMP_THREAD_LIMIT"] = str(threads)
        self._tesseract = pytesseract
        self._lang = lang
        self._psm = psm

    def read_lines(self, image: Image.Image, dpi: int | None) -> list[Box]:
        config = f"--oem 1 --psm {self._psm}" + (f" --dpi {dpi}" if dpi else "")
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
        return boxes

    def orientation(self, image: Image.Image, dpi: int | None) -> int:
        config = "--psm 0" + (f" --dpi {dpi}" if dpi else "")
        try:
            osd: dict[str, Any] = self._tesseract.image_to_osd(
                image, config=config, output_type=self._tesseract.Output.DICT
            )
        except self._tesseract.TesseractError:  # too few characters to tell
            return 0
        if float(osd.get("orientation_conf", 0)) < ORIENTATION_MIN_CONFIDENCE:
            return 0
        return int(osd.get("orientation", 0)) % 360


class TesserocrEngine(TesseractLines):
    """Tesseract's C API through tesserocr: models loaded once, no program started per page."""

    name = "tesserocr"

    def __init__(
        self, threads: int = 1, lang: str = TESSERACT_LANG, psm: int = TESSERACT_PSM
    ) -> None:
        # The wheel's libtesseract is built without OpenMP: one thread whatever this says.
        os.environ["OMP_THREAD_LIMIT"] = str(threads)
        import tesserocr

        self._tesserocr: Any = tesserocr
        self._path = tessdata_dir(lang) or ""
        self._api = tesserocr.PyTessBaseAPI(
            path=self._path, lang=lang, psm=psm, oem=tesserocr.OEM.LSTM_ONLY
        )
        self._osd: Any = None  # loaded the first time a page needs it

    def read_lines(self, image: Image.Image, dpi: int | None) -> list[Box]:
        tesserocr = self._tesserocr
        api = self._api
        api.SetImage(image)
        if dpi:
            api.SetSourceResolution(dpi)
        api.Recognize()
        iterator = api.GetIterator()
        boxes: list[Box] = []
        if iterator is None:
            return boxes
        level = tesserocr.RIL.TEXTLINE
        for line in tesserocr.iterate_level(iterator, level):
            text = " ".join((line.GetUTF8Text(level) or "").split())
            bbox = line.BoundingBox(level)
            if not text or bbox is None:
                continue
            x0, y0, x1, y1 = bbox
            boxes.append(Box(x0, y0, x1, y1, text, float(line.Confidence(level)) / 100))
        api.Clear()
        return boxes

    def orientation(self, image: Image.Image, dpi: int | None) -> int:
        if self._osd is None:
            self._osd = self._tesserocr.PyTessBaseAPI(
                path=self._path, lang="osd", psm=self._tesserocr.PSM.OSD_ONLY
            )
        self._osd.SetImage(image)
        if dpi:
            self._osd.SetSourceResolution(dpi)
        found: dict[str, Any] | None = self._osd.DetectOrientationScript()
        self._osd.Clear()
        if not found or float(found.get("orient_conf", 0)) < ORIENTATION_MIN_CONFIDENCE:
            return 0
        return int(found.get("orient_deg", 0)) % 360

    # Detection alone and recognition alone (`worker/regions.py`, its `RegionEngine`).

    def detect_regions(self, png: bytes) -> DetectedRegions:
        """The page's text lines as Tesseract's layout analysis finds them, nothing read:
        each an upright rectangle's four corners; Tesseract gives no score (None)."""
        from ocr_gateway.worker.engine import DetectedRegions, open_image

        image = open_image(png)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        api = self._api
        api.SetImage(image)
        dpi = page_dpi(image)
        if dpi:
            api.SetSourceResolution(dpi)
        found: list[tuple[list[list[float]], float | None]] = []
        for _crop, box, _block, _para in api.GetComponentImages(self._tesserocr.RIL.TEXTLINE, True):
            x0, y0 = float(box["x"]), float(box["y"])
            x1, y1 = x0 + float(box["w"]), y0 + float(box["h"])
            found.append(([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], None))
        api.Clear()
        return DetectedRegions(width=image.width, height=image.height, boxes=found)

    def recognize_regions(
        self, png: bytes, quads: Sequence[Sequence[Sequence[float]]]
    ) -> list[tuple[str, float]]:
        """The text and confidence (0..1) of each box, in the order given, without layout
        analysis of the page: each box's bounding rectangle is read as one block of text."""
        from ocr_gateway.worker.engine import open_image

        if not quads:
            return []
        image = open_image(png)
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        api = self._api
        dpi = page_dpi(image)
        mode = api.GetPageSegMode()
        api.SetPageSegMode(self._tesserocr.PSM.SINGLE_BLOCK)
        read: list[tuple[str, float]] = []
        try:
            for quad in quads:
                xs = [float(point[0]) for point in quad]
                ys = [float(point[1]) for point in quad]
                # A margin of page around the box: Tesseract misreads a glyph touching the
                # crop's edge ("This" read as "I his").
                pad = max(REGION_MARGIN_PX, REGION_MARGIN_LINES * (max(ys) - min(ys)))
                left, top = max(0, int(min(xs) - pad)), max(0, int(min(ys) - pad))
                right = min(image.width, int(max(xs) + pad) + 1)
                bottom = min(image.height, int(max(ys) + pad) + 1)
                if right - left < 2 or bottom - top < 2:
                    read.append(("", 0.0))
                    continue
                api.SetImage(image.crop((left, top, right, bottom)))
                if dpi:
                    api.SetSourceResolution(dpi)
                text = " ".join(api.GetUTF8Text().split())
                read.append((text, max(0.0, float(api.MeanTextConf())) / 100 if text else 0.0))
        finally:
            api.SetPageSegMode(mode)
            api.Clear()
        return read
