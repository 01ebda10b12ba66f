"""Removing artefacts by owner, for the deletion of every job at once."""

from __future__ import annotations

import asyncio
import uuid

from ocr_gateway.storage.base import ArtefactStore
from ocr_gateway.storage.keys import job_of, job_prefix

# Jobs whose prefixes are deleted at once.
DELETE_CONCURRENCY = 8


async def delete_all_job_artefacts(store: ArtefactStore) -> int:
    """Remove the artefacts of every job, including jobs whose rows are already gone, and
    leave `/images` uploads alone; returns the number of jobs whose artefacts were found."""
    jobs = {job for key in await store.list_keys("") if (job := job_of(key)) is not None}
    limit = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def delete(job: uuid.UUID) -> None:
        async with limit:
            await store.delete_prefix(job_prefix(job))

    await asyncio.gather(*(delete(job) for job in jobs))
    return len(jobs)
