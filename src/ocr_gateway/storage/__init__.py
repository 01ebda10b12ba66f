"""Where every artefact lives: one small async interface, two backends (local disk, S3).

Nothing outside this package builds a path or an object name for an artefact: it asks
`keys` for the artefact's key and the `ArtefactStore` for its bytes. `open_store(settings)`
returns the backend `OCR_GATEWAY_STORAGE` names.
"""

from ocr_gateway.storage.base import (
    ArtefactMissing,
    ArtefactStore,
    StorageUnavailable,
    StoredFile,
)
from ocr_gateway.storage.factory import open_store

__all__ = ["ArtefactMissing", "ArtefactStore", "StorageUnavailable", "StoredFile", "open_store"]
