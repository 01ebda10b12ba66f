"""Local working files: upload spools (`temp/<job_id>.upload`) and scratch folders for the pools.

These are not artefacts: a spool lives until its pages are rendered, a scratch folder until
the pool's output is handed to the artefact store (`ocr_gateway.storage`), which is the only
place an artefact lives. Every path is built from ids, never from client names.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from ocr_gateway.core.settings import Settings

TEMP_SUFFIX = ".upload"
# A render task's scratch folder: `temp/<job_id>.pages-<n>/`, its PNGs moved into the store.
PAGES_SUFFIX = ".pages"


class Storage:
    """`temp/<job_id>.upload`, scratch folders under `temp/`, with async removal."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.temp_dir = settings.temp_dir.resolve()

    async def prepare(self) -> None:
        await anyio.Path(self.temp_dir).mkdir(parents=True, exist_ok=True)

    def temp_path(self, job_id: uuid.UUID) -> Path:
        return self.temp_dir / f"{job_id}{TEMP_SUFFIX}"

    def render_dir(self, job_id: uuid.UUID) -> Path:
        """A new folder name for one render task's PNGs before they are stored (on local
        storage the store renames them into FILES_DIR: the same filesystem keeps that a
        rename). One per task: a resumed render never shares it with the task it follows."""
        return self.temp_dir / f"{job_id}{PAGES_SUFFIX}-{uuid.uuid4().hex[:8]}"

    @contextlib.asynccontextmanager
    async def scratch(self) -> AsyncIterator[Path]:
        """A new empty folder under `temp/` for one piece of pool work, removed at exit."""
        folder = self.temp_dir / f"{uuid.uuid4()}.scratch"
        await anyio.Path(folder).mkdir(parents=True)
        try:
            yield folder
        finally:
            await self.remove_dir(folder)

    async def remove_file(self, path: Path | str) -> None:
        await anyio.Path(path).unlink(missing_ok=True)

    async def remove_dir(self, path: Path) -> None:
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(path, ignore_errors=True))

    async def remove_orphan_uploads(self, known: set[uuid.UUID], min_age_s: float) -> list[Path]:
        """Delete temp files and scratch folders that belong to no job and are older than
        `min_age_s`."""

        def _sweep() -> list[Path]:
            removed = []
            cutoff = time.time() - min_age_s
            for child in self.temp_dir.iterdir():
                if child.name == ".gitignore":
                    continue
                try:
                    owner = uuid.UUID(child.name.split(".", 1)[0])
                except ValueError:
                    owner = None
                try:
                    if owner in known or child.stat().st_mtime > cutoff:
                        continue
                    if child.is_dir():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
                except FileNotFoundError:  # its work finished and removed it meanwhile
                    continue
                removed.append(child)
            return removed

        return await anyio.to_thread.run_sync(_sweep)
