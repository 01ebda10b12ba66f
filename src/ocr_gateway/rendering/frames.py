"""Several images as one multi-page TIFF, run in an inspect process: a task of many images is
one job, and a job has one source file.

Each input frame becomes one page, in order, converted as the renderer converts a frame
(grayscale or RGB), so a page renders exactly as the image would on its own. The TIFF is
uncompressed: it is read once, by the render pool, and deleted. Frames are appended one at a
time, so memory holds one frame, not the whole task. The frame sizes of all the images
together are first held to the same limits as one upload (`check_sizes`), from the headers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageSequence, TiffImagePlugin

from ocr_gateway.rendering.inspection import Inspection, Limits, check_sizes, merge_refusal
from ocr_gateway.rendering.mupdf import RenderOptions, follow_pixel_budget


@dataclass(frozen=True, slots=True)
class Merged:
    """The merged document's inspection (its pages and largest page, or its `problem`), and
    how many pages each image became, in order."""

    inspection: Inspection
    frames: list[int] = field(default_factory=list)


def frame_sizes(image: Image.Image) -> list[int]:
    """Each frame's pixels, from headers: a TIFF's frames each have their own size, every
    other format's frames share the canvas."""
    count = getattr(image, "n_frames", 1)
    if image.format != "TIFF":
        return [image.width * image.height] * count
    sizes = []
    for index in range(count):
        image.seek(index)
        sizes.append(image.width * image.height)
    image.seek(0)
    return sizes


def merge_images(
    paths: Sequence[str], target: str, limits: Limits, options: RenderOptions
) -> Merged:
    """Write the frames of `paths`, in order, as the pages of one TIFF at `target`."""
    follow_pixel_budget(options)
    mode = "L" if options.grayscale else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            per_image: list[list[int]] = []
            for path in paths:
                with Image.open(path) as image:
                    per_image.append(frame_sizes(image))
            verdict = check_sizes("task", [s for sizes in per_image for s in sizes], limits)
            if verdict.problem is not None:
                return Merged(verdict)
            with TiffImagePlugin.AppendingTiffWriter(target, new=True) as tiff:
                for path in paths:
                    with Image.open(path) as image:
                        for frame in ImageSequence.Iterator(image):
                            frame.convert(mode).save(tiff, format="TIFF")
                            tiff.newFrame()
    except Exception as exc:
        return Merged(merge_refusal(exc, limits, "the images"))
    return Merged(verdict, [len(sizes) for sizes in per_image])
