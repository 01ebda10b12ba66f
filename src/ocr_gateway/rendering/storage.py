"""Where uploads and pages live on disk; every path is built from ids, never from client names."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import anyio

from ocr_gateway.core.settings import Settings

TEMP_SUFFIX = ".upload"
# `files/images/` holds `/images` uploads (ocr_gateway.thumbnails), not a job: deleting every
# job leaves it alone.
IMAGES_DIR = "images"


class Storage:
    """`files/<job_id>/<page_number>.png` and `temp/<job_id>.upload`, with async removal."""

    def __init__(self, settings: Settings) -> None:
        self.files_dir = settings.files_dir.resolve()
        self.temp_dir = settings.temp_dir.resolve()

    async def prepare(self) -> None:
        await anyio.Path(self.files_dir).mkdir(parents=True, exist_ok=True)
        await anyio.Path(self.temp_dir).mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: uuid.UUID) -> Path:
        return self.files_dir / str(job_id)

    def page_path(self, job_id: uuid.UUID, page_number: int) -> Path:
        return self.job_dir(job_id) / f"{page_number}.png"

    def temp_path(self, job_id: uuid.UUID) -> Path:
        return self.temp_dir / f"{job_id}{TEMP_SUFFIX}"

    async def remove_file(self, path: Path | str) -> None:
        await anyio.Path(path).unlink(missing_ok=True)

    async def remove_job_dir(self, job_id: uuid.UUID) -> None:
        await anyio.to_thread.run_sync(
            lambda: shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        )

    async def remove_all_job_dirs(self) -> None:
        def _remove_all() -> None:
            for child in self.files_dir.iterdir():
                if child.name == IMAGES_DIR:
                    continue
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                elif child.name != ".gitignore":
                    child.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(_remove_all)

    async def remove_orphan_uploads(self, known: set[uuid.UUID], min_age_s: float) -> list[Path]:
        """Delete temp files that belong to no job and are older than `min_age_s`."""

        def _sweep() -> list[Path]:
            removed = []
            cutoff = time.time() - min_age_s
            for child in self.temp_dir.iterdir():
                if child.name == ".gitignore" or not child.is_file():
                    continue
                try:
                    owner = uuid.UUID(child.name.split(".", 1)[0])
                except ValueError:
                    owner = None
                if owner in known or child.stat().st_mtime > cutoff:
                    continue
                child.unlink(missing_ok=True)
                removed.append(child)
            return removed

        return await anyio.to_thread.run_sync(_sweep)
