"""Duplicate uploads: the one key that says two uploads ask for the same work.

An upload's key is SHA-256 over what decides its outcome: the kind of job it makes, the options
that change the result, and the SHA-256 of each of its files in the order sent. The same tenant
sending the same key again gets the job already made (HTTP 200, `deduplicated: true`) for as
long as that job exists and has not failed or been cancelled; `uq_jobs_tenant_dedup` holds the
database to one such job per tenant and key. `dedup=false` (query parameter or form field)
opts out: the job is stored without a key and never matched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from ocr_gateway.core.errors import InvalidField

# The kinds of job an upload makes. `/ocrpdf`, `/ocrimage` and each file of `POST /jobs` make
# the same kind of job (its pages OCR'd), so the same file sent to any of them is one job.
KIND_OCR = "ocr"
DEDUP_FIELD = "dedup"
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def dedup_key(kind: str, options: Mapping[str, str], *file_hashes: bytes) -> bytes:
    """SHA-256 (32 bytes) of a canonical JSON document of `kind`, `options` and the hashes.

    - `kind` names the job the route makes (`KIND_OCR`; `/images` and `/convert/batch` pass
      their own), so one file sent for thumbnails and for OCR is two jobs.
    - `options` holds only the options that change the outcome (e.g. `{"text_layer": "auto"}`);
      their order does not matter. Options that do not change the pages' text (a callback
      URL) are left out: a duplicate keeps the first job's.
    - `file_hashes` are each file's SHA-256 (`SpooledUpload.sha256`), in the order sent: the
      order of a multi-file job's pages is part of its outcome.
    """
    if not file_hashes:
        raise ValueError("a dedup key needs at least one file hash")
    document = {
        "kind": kind,
        "options": dict(sorted(options.items())),
        "files": [digest.hex() for digest in file_hashes],
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).digest()


def parse_dedup(value: str | None) -> bool:
    """The `dedup` option: True (the default) unless the client says false; 422 if unreadable."""
    if value is None or value == "":
        return True
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise InvalidField("dedup must be 'true' or 'false'")
