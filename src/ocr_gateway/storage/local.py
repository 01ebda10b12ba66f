"""The local-disk backend: key `a/b.png` is `FILES_DIR/a/b.png`, as the gateway always stored."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ocr_gateway.storage.base import ArtefactMissing, ArtefactStore, StorageUnavailable

PARTIAL_SUFFIX = ".part"


class LocalStore(ArtefactStore):
    """Files under one folder; a write goes to `<file>.part` and is renamed into place."""

    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"local:{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"key {key!r} leaves the storage folder")
        return path

    def file_path(self, key: str) -> Path:
        # Lexical, without a system call: the dispatcher asks for every page it publishes, and
        # `_path`'s resolve() costs more than reading the page.
        root = str(self.root)
        path = os.path.normpath(os.path.join(root, key))
        if not path.startswith(root + os.sep):
            raise ValueError(f"key {key!r} leaves the storage folder")
        return Path(path)

    async def prepare(self) -> None:
        await anyio.Path(self.root).mkdir(parents=True, exist_ok=True)

    async def check(self) -> None:
        if not await anyio.Path(self.root).is_dir():
            raise StorageUnavailable(f"the storage folder {self.root} is missing")

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        target = self._path(key)
        await anyio.to_thread.run_sync(_write_atomic, target, data)

    async def put_file(
        self, key: str, path: Path, *, content_type: str | None = None, move: bool = False
    ) -> None:
        target = self._path(key)
        await anyio.to_thread.run_sync(_place_file, path, target, move)

    async def get_bytes(self, key: str) -> bytes:
        try:
            return await anyio.Path(self._path(key)).read_bytes()
        except FileNotFoundError as exc:
            raise ArtefactMissing(f"no artefact {key}") from exc

    async def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        try:
            handle = await anyio.open_file(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise ArtefactMissing(f"no artefact {key}") from exc
        async with handle:
            while chunk := await handle.read(chunk_size):
                yield chunk

    async def size(self, key: str) -> int | None:
        try:
            stat = await anyio.Path(self._path(key)).stat()
        except FileNotFoundError:
            return None
        return stat.st_size

    async def delete(self, key: str) -> None:
        await anyio.Path(self._path(key)).unlink(missing_ok=True)

    async def delete_prefix(self, prefix: str) -> None:
        await anyio.to_thread.run_sync(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> None:
        if prefix.endswith("/"):
            shutil.rmtree(self._path(prefix.rstrip("/")), ignore_errors=True)
            return
        for key in self._list(prefix):
            self._path(key).unlink(missing_ok=True)

    async def list_keys(self, prefix: str) -> list[str]:
        return await anyio.to_thread.run_sync(self._list, prefix)

    def _list(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        keys = []
        for directory, _dirs, files in os.walk(folder):
            for name in files:
                if name.endswith(PARTIAL_SUFFIX):
                    continue
                key = (Path(directory) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    @contextlib.asynccontextmanager
    async def local_copy(self, key: str) -> AsyncIterator[Path]:
        path = self._path(key)
        if not await anyio.Path(path).is_file():
            raise ArtefactMissing(f"no artefact {key}")
        yield path


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)  # a failed write (a full disk) leaves no part behind


def _place_file(source: Path, target: Path, move: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        try:
            os.replace(source, target)
            return
        except OSError:
            pass  # another filesystem (EXDEV): copy, then remove the source
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    try:
        shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    if move:
        source.unlink(missing_ok=True)
