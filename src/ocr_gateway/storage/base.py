"""The artefact store's interface, which both backends implement and one test suite holds.

Keys come from `storage.keys`. Reads of a missing key raise `ArtefactMissing`; a backend
that cannot be reached raises `StorageUnavailable` (a 503 with `Retry-After` at the API).
Work done in the process pools needs files: `local_copy` lends a readable path for a key and
`put_file` stores a file the pool wrote, so pool code takes and writes paths while the
artefact itself lives only in the store.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ocr_gateway.core.errors import GatewayError, ServiceUnavailable


class StorageUnavailable(ServiceUnavailable):
    """The configured storage cannot be reached, or refused the operation."""


class ArtefactMissing(GatewayError):
    """No artefact has this key (deleted, never written, or lost with its storage)."""

    status_code = 404
    kind = "not_found"


@dataclass(frozen=True, slots=True)
class StoredFile:
    """An artefact a route serves: streamed from the store by key (`iter_bytes`)."""

    key: str
    size: int
    media_type: str


class ArtefactStore(abc.ABC):
    """Bytes by key. Writes are atomic: a reader sees the whole old object or the whole new one."""

    # `local` or `s3`: the value of `OCR_GATEWAY_STORAGE` that chose this backend.
    backend: ClassVar[str]

    @abc.abstractmethod
    async def prepare(self) -> None:
        """Make the store usable (create the folder or check the bucket); called at start."""

    async def close(self) -> None:  # noqa: B027 - a backend without connections has none
        """Release connections; the store is not used after this."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raise `StorageUnavailable` unless the store answers now (health checks)."""

    @abc.abstractmethod
    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store `data` under `key`, replacing any object there."""

    @abc.abstractmethod
    async def put_file(
        self, key: str, path: Path, *, content_type: str | None = None, move: bool = False
    ) -> None:
        """Store a local file's content under `key`; with `move`, the file may be consumed
        (renamed into place on disk, deleted after the upload on S3)."""

    @abc.abstractmethod
    async def get_bytes(self, key: str) -> bytes:
        """The whole object."""

    @abc.abstractmethod
    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object in chunks, for streaming a large download to a client."""

    @abc.abstractmethod
    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is none."""

    async def exists(self, key: str) -> bool:
        return await self.size(key) is not None

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove one object; a missing one is not an error."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix` (a job's `<job_id>/`)."""

    @abc.abstractmethod
    async def list_keys(self, prefix: str) -> list[str]:
        """The keys that start with `prefix`, sorted."""

    @abc.abstractmethod
    def local_copy(self, key: str) -> contextlib.AbstractAsyncContextManager[Path]:
        """A readable file with the object's content while the context is open (the file
        itself on disk; a temporary download on S3, removed at exit)."""

    def file_path(self, key: str) -> Path | None:
        """The file that holds `key`, for a caller that batches blocking reads on a thread of
        its own (the dispatcher's page reader: a thread hop per read costs more than the
        read); None where objects are not files (S3)."""
        return None

    @contextlib.asynccontextmanager
    async def local_copies(self, keys: Iterable[str]) -> AsyncIterator[dict[str, Path]]:
        """`local_copy` of many keys at once, by key; a key without an object is left out
        (a page deleted meanwhile). S3 downloads them concurrently."""
        async with contextlib.AsyncExitStack() as stack:
            copies: dict[str, Path] = {}
            for key in keys:
                try:
                    copies[key] = await stack.enter_async_context(self.local_copy(key))
                except ArtefactMissing:
                    continue
            yield copies

    async def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL that reads the object without credentials until it expires, or None where
        the backend has none (local disk: the gateway signs a URL of its own instead)."""
        return None
