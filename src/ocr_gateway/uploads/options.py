"""The options an upload may carry, as a query parameter or a form field beside its file(s).

- `text_layer=auto|off` (PDFs; default `OCR_GATEWAY_TEXT_LAYER`): with `auto`, a page whose own
  text layer passes the quality check is read from it at render time and never OCR'd.
- `dedup=true|false` (default true): `false` always makes a new job (uploads/dedup.py).
- `priority=0..9` (default 0, higher first): the job's publishing priority. It is no part of
  the dedup key (it does not change the outcome): a duplicate answers the first job, with the
  first job's priority (`PUT /admin/jobs/{job_id}/priority` changes it).

A form field wins over a query parameter of the same name. An unreadable value is a 422.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.models import TextLayer
from ocr_gateway.dispatch.schemas import MAX_JOB_PRIORITY
from ocr_gateway.uploads.dedup import DEDUP_FIELD, parse_dedup
from ocr_gateway.uploads.media import MediaType

TEXT_LAYER_FIELD = "text_layer"
PRIORITY_FIELD = "priority"
OPTION_FIELDS = frozenset({TEXT_LAYER_FIELD, DEDUP_FIELD, PRIORITY_FIELD})


@dataclass(frozen=True, slots=True)
class UploadOptions:
    """What an upload asked for beyond its files."""

    text_layer: TextLayer = TextLayer.OFF
    dedup: bool = True
    priority: int = 0

    def key_options(self, media_type: MediaType) -> dict[str, str]:
        """The options that change the outcome of a file of `media_type`, for its dedup key:
        the text layer is read from PDFs only, so an image's key leaves it out."""
        if media_type == MediaType.PDF:
            return {TEXT_LAYER_FIELD: self.text_layer.value}
        return {}

    def text_layer_for(self, media_type: MediaType | str) -> TextLayer:
        """The job's `text_layer`: an image has none to read."""
        return self.text_layer if media_type == MediaType.PDF else TextLayer.OFF


def read_options(
    query: Mapping[str, str], fields: Mapping[str, str], settings: Settings
) -> UploadOptions:
    """The upload's options from its form `fields` and `query` parameters, else the defaults."""

    def value(name: str) -> str | None:
        found = fields.get(name)
        return found if found is not None else query.get(name)

    raw_layer = value(TEXT_LAYER_FIELD)
    if raw_layer is None or raw_layer == "":
        text_layer = TextLayer(settings.text_layer)
    else:
        try:
            text_layer = TextLayer(raw_layer.strip().lower())
        except ValueError:
            wanted = " or ".join(f"'{t}'" for t in TextLayer)
            raise InvalidField(f"text_layer must be {wanted}, not {raw_layer[:40]!r}") from None
    return UploadOptions(
        text_layer=text_layer,
        dedup=parse_dedup(value(DEDUP_FIELD)),
        priority=parse_priority(value(PRIORITY_FIELD)),
    )


def parse_priority(raw: str | None) -> int:
    """A job's priority: an integer from 0 to MAX_JOB_PRIORITY written in digits (0 if absent
    or empty), else a 422."""
    if raw is None or raw.strip() == "":
        return 0
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_JOB_PRIORITY:
        raise InvalidField(f"priority must be 0 to {MAX_JOB_PRIORITY}, not {raw[:40]!r}")
    return int(text)
