"""The results-queue contract, validated before anything touches the database."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TextBox(BaseModel):
    """A word or line on the page image, in PNG pixel coordinates."""

    model_config = ConfigDict(extra="allow")

    bbox: tuple[float, float, float, float]
    text: str = ""
    confidence: float | None = None


class ResultMessage(BaseModel):
    """`{"job_id", "page_number", "status": "done"|"failed", "text", "error"?, "boxes"?}`."""

    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID
    page_number: int = Field(ge=1)
    status: Literal["done", "failed"]
    text: str = ""
    error: str | None = None
    boxes: list[TextBox] | None = None

    @field_validator("text", "error")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        """PostgreSQL text cannot hold NUL characters."""
        return None if value is None else value.replace("\x00", "")
