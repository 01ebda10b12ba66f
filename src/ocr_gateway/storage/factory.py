"""The backend `OCR_GATEWAY_STORAGE` names."""

from __future__ import annotations

from ocr_gateway.core.settings import Settings
from ocr_gateway.storage.base import ArtefactStore
from ocr_gateway.storage.local import LocalStore


def open_store(settings: Settings) -> ArtefactStore:
    """A store for these settings; call `prepare()` before use and `close()` at the end."""
    if settings.storage == "s3":
        # Imported here: a gateway on local disk never loads aiobotocore.
        from ocr_gateway.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    return LocalStore(settings.files_dir)
