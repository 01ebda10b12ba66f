"""An artefact as an HTTP answer: streamed from the store, with its length known up front."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from ocr_gateway.storage import ArtefactStore, StoredFile


def stored_response(
    store: ArtefactStore, stored: StoredFile, headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    """Stream `stored` in chunks (never whole in memory, on either backend)."""
    return StreamingResponse(
        store.iter_bytes(stored.key),
        media_type=stored.media_type,
        headers={"Content-Length": str(stored.size), **(headers or {})},
    )


def attachment(filename: str) -> dict[str, str]:
    """A download's Content-Disposition, as Starlette's FileResponse writes it (RFC 6266:
    `filename*=utf-8''...` for a name that is not plain ASCII)."""
    quoted = quote(filename)
    if quoted != filename:
        return {"Content-Disposition": f"attachment; filename*=utf-8''{quoted}"}
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
