"""Response models of `/convert/batch` and of a job's downloads."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

# Where a download is served; `GET /api/v1/jobs/{job_id}` lists it once the job is done.
DOWNLOAD_PATH = "/api/v1/download/{file_id}"


class ConvertedFile(BaseModel):
    """One file of the batch: its place in the request, its name, and its pages in the job."""

    index: int
    filename: str
    total_page_number: int


class ConvertAccepted(BaseModel):
    """The batch's one job. `deduplicated`: the same tenant sent the same files with the same
    options before, and this is that job (answered 200, not 202)."""

    job_id: uuid.UUID
    status: str
    files: list[ConvertedFile]
    deduplicated: bool = False


class DownloadLink(BaseModel):
    """A file made from the job: `kind` `xlsx` is the workbook of its tables."""

    file_id: uuid.UUID
    kind: Literal["xlsx"]
    url: str

    @classmethod
    def of(cls, file_id: uuid.UUID) -> DownloadLink:
        return cls(file_id=file_id, kind="xlsx", url=DOWNLOAD_PATH.format(file_id=file_id))
