"""What a gateway's artefact store holds, read through the store, so one test checks either
backend (local disk or S3, `OCR_GATEWAY_STORAGE`)."""

from __future__ import annotations

import uuid

from ocr_gateway.components import Components
from ocr_gateway.storage.keys import job_prefix


async def job_names(services: Components, job_id: uuid.UUID | str) -> list[str]:
    """The names of a job's artefacts (`1.png`, `result-<key>.pdf`, ...), sorted."""
    prefix = job_prefix(uuid.UUID(str(job_id)))
    return sorted(key[len(prefix) :] for key in await services.store.list_keys(prefix))


async def page_numbers(services: Components, job_id: uuid.UUID | str) -> list[int]:
    """The numbers of the job's stored page PNGs, in order."""
    names = await job_names(services, job_id)
    return sorted(int(name[: -len(".png")]) for name in names if name[:-4].isdigit())


async def job_artefact(services: Components, job_id: uuid.UUID | str, name: str) -> bytes:
    return await services.store.get_bytes(f"{job_prefix(uuid.UUID(str(job_id)))}{name}")
