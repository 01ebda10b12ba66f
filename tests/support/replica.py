"""Another API process on the same database and queues: a second app with its own lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from ocr_gateway.app import create_app
from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings


@dataclass(frozen=True, slots=True)
class Replica:
    app: FastAPI
    client: httpx.AsyncClient  # in-process, under /api/v1

    @property
    def services(self) -> Components:
        services: Components = self.app.state.components
        return services


@contextlib.asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[Replica]:
    """An app as `ocr-gateway serve` runs it (its dispatcher, results consumer and event
    listener included) for as long as the context lasts; leaving it is the process's exit."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://replica/api/v1", timeout=30
        ) as client:
            yield Replica(app, client)
